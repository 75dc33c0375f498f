// Package server is the API of a conversational application: the handlers
// that run when a user opens a chat, sends a message, changes settings,
// resumes a thread, stops a handler or ends the chat, and what those
// handlers can do with the chat: send and stream messages, ask the user for
// text, a choice or files, and keep values in the user's session.
//
// A complete application:
//
//	srv, err := server.New(server.Config{Auth: server.AuthNone})
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
//		return c.Send(ctx, "You said: "+m.Content)
//	})
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//	defer stop()
//	if err := srv.ListenAndServe(ctx, "localhost:8000"); err != nil {
//		log.Fatal(err)
//	}
//
// # Lifecycle hooks
//
// Register handlers before serving; a registration after Start panics.
//
//   - [Server.OnChatStart]: a new chat opened (Chainlit's on_chat_start).
//   - [Server.OnMessage]: the user sent a message (on_message).
//   - [Server.OnSettingsUpdate]: the user changed chat settings, already
//     validated against the schema (on_settings_update).
//   - [Server.OnChatResume]: the user resumed a persisted thread; the
//     handler gets the thread with its newest steps (on_chat_resume).
//   - [Server.OnStop]: the user stopped the running handler, whose context
//     is cancelled (on_stop).
//   - [Server.OnChatEnd]: the chat ended, once: on end, logout, thread
//     deletion, or when the grace period ran out after the last socket
//     left (on_chat_end).
//
// The handlers of one session run one at a time, in order; each gets a
// context that stop, end and shutdown cancel. An error a handler returns
// is logged with its detail and reaches the client only as handler_error.
//
// # Chat
//
// A [Chat] is valid during its handler call. [Chat.Send] and
// [Chat.SendMessage] send messages that are stored as steps of the
// thread; [Chat.Stream] sends one as it is produced ([Stream.Write],
// [Stream.Writer] for io.Copy, [Stream.Close]). [Chat.AskUser],
// [Chat.AskFile] and [Chat.AskAction] ask the user and wait for the
// answer, whichever instance receives it; they return [ErrAskTimeout]
// when none comes in time.
//
// # User session
//
// [Chat.Session] is the socket's session (Chainlit's user_session):
// Get and Set store JSON values that any instance reads back, typed with
// session.Get or session.NewAccessor, beside the read-only built-ins (id,
// user, env, chat settings, chat profile, client type). Values are saved
// with the thread when the chat ends and restored when it is resumed;
// env never is.
//
// # Chat profiles and settings
//
// [Server.SetChatProfiles] gives each user the profiles (and their
// starters) they may use; the server never trusts a profile name a client
// sends. [Server.SetChatSettings] declares the settings widgets of a
// profile (package settings); [Chat.UpdateSettings] and
// [Chat.SetSettingsSchema] change them from a handler.
//
// # Authentication and serving
//
// [Config] selects password sign-in (argon2id, or the application's own
// check with [Server.SetPasswordAuth]), sign-in through identity providers
// (Config.Providers: OpenID Connect by discovery, or GitHub; beside
// passwords or alone, with [Server.SetOAuthCallback] to decide who comes in
// and with which metadata), a trusted proxy's header ([Server.SetHeaderAuth]
// for a callback of your own) or anonymous users.
// [New] without options keeps users, sessions and threads in memory, for a
// single instance; [WithRedis] or [WithRedisURL] keeps them in Redis, so
// that any number of instances behind a load balancer serve any client.
// [Server.ListenAndServe] serves until its context ends, then shuts down
// gracefully; [Server.Auth] manages users in code.
package server
