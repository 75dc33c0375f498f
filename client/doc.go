// Package client is a Go client of a chatd server, for programs that talk
// to it: bots, tests, services and load tools. It speaks protocol 1
// (docs/protocol.md) and depends only on the standard library, the
// WebSocket library and the module's wire package.
//
// A [Client] holds the server's address and a token: [Client.Login] gets
// one with an identifier and a password, [WithToken] takes an existing
// one, [Client.Logout] revokes it. Many sessions may share a client.
//
// [Client.Open] opens a new chat and [Client.Resume] a persisted thread;
// each returns a [Session], welcomed ([Session.Welcome] has its session
// id, thread id, profile and settings). On a session:
//
//   - [Session.Send] and [Session.SendMessage] send user messages with a
//     client id (the server stores an id once);
//   - [Session.Next] yields the server's frames: every sequenced frame
//     exactly once and in seq order, and the unsequenced ones (stream
//     deltas, errors, a history) where they came;
//   - [Session.AnswerText], [Session.AnswerAction] and
//     [Session.AnswerFiles] answer asks, [Session.Upload] uploads files
//     for a file ask, [Session.UpdateSettings], [Session.Stop] and
//     [Session.End] send the other frames;
//   - [Session.Close] closes the socket and waits for the session's
//     goroutines.
//
// # Reconnecting
//
// When its socket drops (close 1001 or 1006, a slow-client 4429, a failed
// ping, or a gap in the seqs), a session reconnects on its own after a
// random delay that backs off ([ReconnectPolicy]) and reattaches with the
// last seq it took; the server replays what was missed from its log, so
// Next neither loses nor repeats a frame. Messages not echoed yet are sent
// again with the same client id once the replay is done; the server
// answers an id it stored already with its original echo, which the
// session recognizes. If the session is gone (close 4410, or not_found on
// reattach) the session resumes the thread, or else opens a new chat, as
// the protocol says, and Next yields the new welcome. A close after which
// the protocol does not reconnect (1000 chat ended, 4409 taken over, 4401
// token revoked, 1007, 1008, 1009) ends the session: Next returns the
// reason once the frames were read. [Session.Stats] counts reconnects,
// duplicates dropped, gaps seen and resets, for a load tool.
//
// The echo of a user message does not carry its client id: a session
// matches echoes to the messages it sent by order and content
// ([Frame.ClientID]), which is exact for messages sent from one session.
package client
