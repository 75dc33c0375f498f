package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/client"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/server"
	"github.com/chatd-project/chatd/settings"
	"github.com/chatd-project/chatd/wire"
)

// echoHandler answers every message with one reply.
func echoHandler(srv *server.Server) {
	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
		return c.Send(ctx, "You said: "+m.Content)
	})
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil, nil)
	tests := []struct {
		name, identifier, password string
		wantErr                    error
	}{
		{"right password", "alice", "password-alice", nil},
		{"wrong password", "alice", "wrong", client.ErrInvalidCredentials},
		{"unknown identifier", "bob", "password-bob", client.ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.newClient()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			res, err := c.Login(ctx, tt.identifier, tt.password)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Login err = %v, want %v", err, tt.wantErr)
				}
				var ae *client.Error
				if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != wire.CodeInvalidCredentials {
					t.Fatalf("Login err = %#v, want a 401 invalid_credentials *Error", err)
				}
				if c.Token() != "" {
					t.Fatalf("a refused login left a token")
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if res.Token == "" || c.Token() != res.Token || res.User.Identifier != tt.identifier {
				t.Fatalf("Login = %+v, token %q", res, c.Token())
			}
			me, err := c.Me(ctx)
			if err != nil || me.Identifier != tt.identifier {
				t.Fatalf("Me = %+v, %v", me, err)
			}
		})
	}
}

func TestLogoutRevokesTokenAndClosesSessions(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.login()
	s := e.open(c, client.ChatOptions{})
	tok := c.Token()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if c.Token() != "" {
		t.Fatalf("token kept after logout")
	}
	if err := waitErr(t, s); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("session ended with %v, want ErrUnauthorized (4401)", err)
	}
	old := e.newClient(client.WithToken(tok))
	if _, err := old.Me(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("Me with a revoked token: %v, want ErrUnauthorized", err)
	}
	if _, err := old.Open(ctx, client.ChatOptions{}); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("Open with a revoked token: %v, want ErrUnauthorized", err)
	}
}

func TestOpenWelcome(t *testing.T) {
	e := newEnv(t, func(srv *server.Server) {
		srv.SetChatProfiles(func(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
			return []profiles.ChatProfile{{Name: "assistant", Default: true}, {Name: "coder"}}, nil
		})
	}, nil)
	c := e.login()
	tests := []struct {
		profile, want string
		wantErr       error
	}{
		{"", "assistant", nil},
		{"coder", "coder", nil},
		{"admin", "", client.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run("profile "+tt.profile, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			s, err := c.Open(ctx, client.ChatOptions{Profile: tt.profile})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			w := s.Welcome()
			if w.Type != "welcome" || w.Resumed != "none" || w.LastSeq != 0 || w.SessionID == "" || w.ThreadID == "" {
				t.Fatalf("welcome = %+v", w)
			}
			if w.ChatProfile == nil || *w.ChatProfile != tt.want {
				t.Fatalf("chat_profile = %v, want %s", w.ChatProfile, tt.want)
			}
			if w.User == nil || w.User.Identifier != "alice" {
				t.Fatalf("welcome user = %+v", w.User)
			}
			if s.ID() != w.SessionID || s.ThreadID() != w.ThreadID || s.LastSeq() != 0 {
				t.Fatalf("session %s/%s/%d, welcome %s/%s", s.ID(), s.ThreadID(), s.LastSeq(), w.SessionID, w.ThreadID)
			}
		})
	}
}

func TestAnonymousTokenIsKept(t *testing.T) {
	e := newEnv(t, echoHandler, func(c *server.Config) { c.Auth = server.AuthNone })
	c := e.newClient()
	s := e.open(c, client.ChatOptions{})
	if s.Welcome().Token == "" || c.Token() != s.Welcome().Token {
		t.Fatalf("welcome token %q, client token %q", s.Welcome().Token, c.Token())
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Send(ctx, "hi"); err != nil {
		t.Fatal(err)
	}
	if got := types(untilTaskEnd(t, s)); !slices.Equal(got, []string{"message:user_message", "task_start", "message:assistant_message", "task_end"}) {
		t.Fatalf("frames %v", got)
	}
}

func TestMessageReply(t *testing.T) {
	e := newEnv(t, echoHandler, nil)
	s := e.open(e.login(), client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 3 {
		content := fmt.Sprintf("hello %d", i)
		id, err := s.Send(ctx, content)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		fs := untilTaskEnd(t, s)
		want := []string{"message:user_message", "task_start", "message:assistant_message", "task_end"}
		if got := types(fs); !slices.Equal(got, want) {
			t.Fatalf("frames %v, want %v", got, want)
		}
		if fs[0].ClientID != id || fs[0].Message.Content != content {
			t.Fatalf("echo %+v (client id %q), want client id %q", fs[0].Message, fs[0].ClientID, id)
		}
		if got := fs[2].Message.Content; got != "You said: "+content {
			t.Fatalf("reply %q", got)
		}
		if *fs[3].Task.Stopped || *fs[3].Task.Error || *fs[3].Task.Interrupted {
			t.Fatalf("task_end %+v", fs[3].Task)
		}
		for j, f := range fs {
			if want := int64(4*i + j + 1); f.Seq != want {
				t.Fatalf("frame %d seq %d, want %d", j, f.Seq, want)
			}
		}
	}
	if s.Pending() != 0 || s.LastSeq() != 12 {
		t.Fatalf("pending %d, last seq %d", s.Pending(), s.LastSeq())
	}
}

func TestMessageRefusedIsNotPending(t *testing.T) {
	e := newEnv(t, echoHandler, func(c *server.Config) { c.MaxMessageBytes = 8 })
	s := e.open(e.login(), client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	id, err := s.Send(ctx, "far too long for the server")
	if err != nil {
		t.Fatal(err)
	}
	f := next(t, s)
	if f.Type != client.TypeError || f.Error.Code != wire.CodeTooLarge || f.ClientID != id || f.Error.Ref != id {
		t.Fatalf("frame %+v (error %+v), want too_large for %s", f, f.Error, id)
	}
	if s.Pending() != 0 {
		t.Fatalf("a refused message is still pending")
	}
}

// TestReconnectAfterDrop cuts the socket in the middle of a handler's
// turn; the session reattaches by itself, the frames produced meanwhile
// are replayed, a message sent meanwhile goes after the reattach, and
// every seq is taken once.
func TestReconnectAfterDrop(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			if err := c.Send(ctx, "first reply to "+m.Content); err != nil {
				return err
			}
			if m.Content == "block" {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return c.Send(ctx, "second reply to "+m.Content)
		})
	}, nil)
	s := e.open(e.login(), client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	var all []client.Frame
	id1, err := s.Send(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, untilTaskEnd(t, s)...)
	idBlock, err := s.Send(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	for {
		f := next(t, s)
		all = append(all, f)
		if f.IsAssistantMessage() && f.Message.Content == "first reply to block" {
			break
		}
	}

	// The network fails while the handler runs; it goes on meanwhile.
	e.net.cut()
	close(release)
	id3, err := s.Send(ctx, "three")
	if err != nil {
		t.Fatal(err)
	}
	var welcome *wire.Welcome
	echoed3 := false
	for {
		f := next(t, s)
		if f.Type == client.TypeWelcome {
			welcome = f.Welcome
			continue
		}
		all = append(all, f)
		if f.ClientID == id3 {
			echoed3 = true
		}
		if echoed3 && f.Type == client.TypeTaskEnd {
			break
		}
	}

	if welcome == nil || welcome.Resumed != "session" || welcome.Replay != "log" || welcome.SessionID != s.ID() {
		t.Fatalf("reconnect welcome %+v", welcome)
	}
	var seqs []int64
	echoes := map[string]int{}
	replies := map[string]int{}
	for _, f := range all {
		if f.Seq > 0 {
			seqs = append(seqs, f.Seq)
		}
		if f.IsEcho() {
			echoes[f.ClientID]++
		}
		if f.IsAssistantMessage() {
			replies[f.Message.Content]++
		}
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("seqs %v: not 1..n without gaps or repeats", seqs)
		}
	}
	for _, id := range []string{id1, idBlock, id3} {
		if echoes[id] != 1 {
			t.Fatalf("echoes %v: %s not echoed once", echoes, id)
		}
	}
	for _, m := range []string{"one", "block", "three"} {
		if replies["first reply to "+m] != 1 || replies["second reply to "+m] != 1 {
			t.Fatalf("replies %v: not one of each for %q", replies, m)
		}
	}
	st := s.Stats()
	if st.Reconnects < 1 || st.Gaps != 0 || st.Duplicates != 0 || st.Resets != 0 || st.Replaced != 0 {
		t.Fatalf("stats %+v", st)
	}
	if s.Pending() != 0 {
		t.Fatalf("%d messages still pending", s.Pending())
	}
}

func TestAnswerAsks(t *testing.T) {
	e := newEnv(t, func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			switch m.Content {
			case "text":
				answer, err := c.AskUser(ctx, server.AskUser{Content: "Your name?"})
				if err != nil {
					return err
				}
				return c.Send(ctx, "Hello, "+answer)
			case "action":
				a, err := c.AskAction(ctx, server.AskAction{Content: "Continue?", Actions: []server.Action{
					{Name: "yes", Label: "Yes"}, {Name: "no", Label: "No"}}})
				if err != nil {
					return err
				}
				return c.Send(ctx, "You chose "+a.Name)
			}
			return nil
		})
	}, nil)
	s := e.open(e.login(), client.ChatOptions{})
	tests := []struct {
		message, kind string
		answer        func(ctx context.Context, s *client.Session, ask *wire.Ask) error
		reply         string
	}{
		{"text", "text", func(ctx context.Context, s *client.Session, ask *wire.Ask) error {
			return s.AnswerText(ctx, ask.AskID, "Ada")
		}, "Hello, Ada"},
		{"action", "action", func(ctx context.Context, s *client.Session, ask *wire.Ask) error {
			if len(ask.Actions) != 2 || ask.Actions[0].Name != "yes" {
				return fmt.Errorf("actions %+v", ask.Actions)
			}
			return s.AnswerAction(ctx, ask.AskID, "yes")
		}, "You chose yes"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if _, err := s.Send(ctx, tt.message); err != nil {
				t.Fatal(err)
			}
			f, _ := expect(t, s, client.TypeAsk)
			if f.Ask.Kind != tt.kind || f.Seq == 0 {
				t.Fatalf("ask %+v seq %d", f.Ask, f.Seq)
			}
			if err := tt.answer(ctx, s, f.Ask); err != nil {
				t.Fatalf("answer: %v", err)
			}
			fs := untilTaskEnd(t, s)
			want := []string{"ask_end", "message:user_message", "message:assistant_message", "task_end"}
			if got := types(fs); !slices.Equal(got, want) {
				t.Fatalf("frames %v, want %v", got, want)
			}
			if fs[0].AskEnd.Reason != "answered" || fs[1].IsEcho() || fs[1].ClientID != "" {
				t.Fatalf("ask_end %+v, answer %+v", fs[0].AskEnd, fs[1].Message)
			}
			if fs[2].Message.Content != tt.reply {
				t.Fatalf("reply %q, want %q", fs[2].Message.Content, tt.reply)
			}
			// A second answer is refused: the ask is answered.
			if err := tt.answer(ctx, s, f.Ask); err != nil {
				t.Fatal(err)
			}
			ef := next(t, s)
			if ef.Type != client.TypeError || ef.Error.Code != wire.CodeNotFound || ef.Error.Ref != "answer:"+f.Ask.AskID {
				t.Fatalf("second answer: %+v", ef.Error)
			}
		})
	}
}

func TestUploadAndAnswerFileAsk(t *testing.T) {
	e := newEnv(t, func(srv *server.Server) {
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			files, err := c.AskFile(ctx, server.AskFile{Content: "Your data?", Accept: []string{"text/csv"}})
			if err != nil {
				return err
			}
			for _, f := range files {
				rc, err := f.Open()
				if err != nil {
					return err
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
				if err := c.Send(ctx, fmt.Sprintf("%s %s %q", f.Name, f.MIME, b)); err != nil {
					return err
				}
			}
			return nil
		})
	}, nil)
	c := e.login()
	s := e.open(c, client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Send(ctx, "analyze"); err != nil {
		t.Fatal(err)
	}
	f, _ := expect(t, s, client.TypeAsk)
	if f.Ask.Kind != "file" {
		t.Fatalf("ask %+v", f.Ask)
	}

	// Refused uploads: a type the ask does not accept, and an ask that
	// is not pending.
	_, err := s.Upload(ctx, f.Ask.AskID, client.UploadFile{Name: "page.html", Content: strings.NewReader("<html></html>")})
	if !client.IsCode(err, wire.CodeUnsupportedType) {
		t.Fatalf("upload of html: %v, want unsupported_type", err)
	}
	_, err = c.Upload(ctx, s.ID(), "00000000-0000-4000-8000-000000000000", client.UploadFile{Name: "a.csv", Content: strings.NewReader("a\n")})
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("upload for no ask: %v, want ErrNotFound", err)
	}

	refs, err := s.Upload(ctx, f.Ask.AskID, client.UploadFile{Name: "data.csv", Content: strings.NewReader("a,b\n1,2\n")})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if len(refs) != 1 || refs[0].Name != "data.csv" || refs[0].MIME != "text/csv" || refs[0].Size != 8 || refs[0].ID == "" {
		t.Fatalf("refs %+v", refs)
	}
	if err := s.AnswerFiles(ctx, f.Ask.AskID, refs[0].ID); err != nil {
		t.Fatal(err)
	}
	fs := untilTaskEnd(t, s)
	want := []string{"ask_end", "message:user_message", "message:assistant_message", "task_end"}
	if got := types(fs); !slices.Equal(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}
	if got := fs[2].Message.Content; got != `data.csv text/csv "a,b\n1,2\n"` {
		t.Fatalf("reply %s", got)
	}
}

func TestResumeThread(t *testing.T) {
	e := newEnv(t, echoHandler, nil)
	c := e.login()
	s := e.open(c, client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Send(ctx, "remember me"); err != nil {
		t.Fatal(err)
	}
	untilTaskEnd(t, s)
	threadID := s.ThreadID()
	if err := s.End(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, s); !errors.Is(err, client.ErrEnded) {
		t.Fatalf("session ended with %v, want ErrEnded", err)
	}

	r, err := c.Resume(ctx, threadID, client.ChatOptions{Reconnect: fastReconnect})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	defer r.Close()
	w := r.Welcome()
	if w.Resumed != "thread" || w.ThreadID != threadID || w.SessionID == s.ID() {
		t.Fatalf("welcome %+v", w)
	}
	h := next(t, r)
	if h.Type != client.TypeHistory || h.History.ID != threadID {
		t.Fatalf("first frame %+v", h)
	}
	var contents []string
	for _, st := range h.History.Steps {
		contents = append(contents, st.Content)
	}
	if !slices.Equal(contents, []string{"remember me", "You said: remember me"}) {
		t.Fatalf("history steps %q", contents)
	}
	// The resumed session's seqs start again at 1.
	if _, err := r.Send(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	fs := untilTaskEnd(t, r)
	if fs[0].Seq != 1 || fs[0].Message.ThreadID != threadID || fs[2].Message.Content != "You said: again" {
		t.Fatalf("frames after resume %v (first seq %d)", types(fs), fs[0].Seq)
	}

	if _, err := c.Resume(ctx, "00000000-0000-4000-8000-000000000000", client.ChatOptions{}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("resume of no thread: %v, want ErrNotFound", err)
	}
}

func TestTakenOverSessionEnds(t *testing.T) {
	e := newEnv(t, echoHandler, nil)
	c := e.login()
	s := e.open(c, client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Send(ctx, "hi"); err != nil {
		t.Fatal(err)
	}
	untilTaskEnd(t, s)
	// Resuming the thread of a live session takes the session over.
	r, err := c.Resume(ctx, s.ThreadID(), client.ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if w := r.Welcome(); w.Resumed != "session" || w.Replay != "reset" || w.SessionID != s.ID() || w.LastSeq != 4 {
		t.Fatalf("welcome %+v", w)
	}
	if err := waitErr(t, s); !errors.Is(err, client.ErrTakenOver) {
		t.Fatalf("old session ended with %v, want ErrTakenOver", err)
	}
	if f := next(t, r); f.Type != client.TypeHistory {
		t.Fatalf("first frame %s, want history", f.Type)
	}
	if _, err := r.Send(ctx, "still here"); err != nil {
		t.Fatal(err)
	}
	if fs := untilTaskEnd(t, r); fs[0].Seq != 5 {
		t.Fatalf("seq after the takeover %d, want 5", fs[0].Seq)
	}
}

func TestCloseEndsSession(t *testing.T) {
	e := newEnv(t, echoHandler, nil)
	s := e.open(e.login(), client.ChatOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := s.Send(ctx, "late"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := s.Stop(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Stop after Close: %v", err)
	}
	<-s.Done()
	_ = s.Close() // twice is fine
}

func TestRepeatedClientIDIsStoredOnce(t *testing.T) {
	e := newEnv(t, echoHandler, nil)
	s := e.open(e.login(), client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const id = "0b6c5f4e-9a43-4b1e-8f57-5d2f3c1a7e90"
	for range 2 {
		if got, err := s.SendMessage(ctx, client.Message{ID: id, Content: "once"}); err != nil || got != id {
			t.Fatalf("SendMessage = %q, %v", got, err)
		}
	}
	fs := untilTaskEnd(t, s)
	if len(fs) != 4 || fs[0].ClientID != id {
		t.Fatalf("frames %v", types(fs))
	}
	// Again once echoed: the server answers with the original echo only.
	if _, err := s.SendMessage(ctx, client.Message{ID: id, Content: "once"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, "next"); err != nil {
		t.Fatal(err)
	}
	fs = untilTaskEnd(t, s)
	if len(fs) != 4 || fs[0].Message.Content != "next" || fs[0].Seq != 5 {
		t.Fatalf("frames %v (first seq %d)", types(fs), fs[0].Seq)
	}
	if st := s.Stats(); st.Duplicates != 0 || s.Pending() != 0 {
		t.Fatalf("stats %+v, pending %d", st, s.Pending())
	}
}

func TestUpdateSettingsAndStop(t *testing.T) {
	started := make(chan struct{}, 1)
	e := newEnv(t, func(srv *server.Server) {
		if err := srv.SetChatSettings("*", []settings.Widget{
			settings.Select{ID: "language", Label: "Language", Values: []string{"en", "fr"}, InitialValue: "en"}}); err != nil {
			t.Fatal(err)
		}
		srv.OnSettingsUpdate(func(ctx context.Context, c *server.Chat, values map[string]any) error {
			return c.Send(ctx, fmt.Sprint("language ", values["language"]))
		})
		srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
			started <- struct{}{}
			<-ctx.Done() // until stopped
			return ctx.Err()
		})
	}, nil)
	s := e.open(e.login(), client.ChatOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if v := s.Welcome().Settings.Values["language"]; v != "en" {
		t.Fatalf("welcome settings %v", s.Welcome().Settings.Values)
	}

	if err := s.UpdateSettings(ctx, map[string]any{"language": "fr"}); err != nil {
		t.Fatal(err)
	}
	fs := untilTaskEnd(t, s)
	if got := types(fs); !slices.Equal(got, []string{"settings", "task_start", "message:assistant_message", "task_end"}) {
		t.Fatalf("frames %v", got)
	}
	if fs[0].Settings.Values["language"] != "fr" || fs[2].Message.Content != "language fr" {
		t.Fatalf("settings %v, reply %q", fs[0].Settings.Values, fs[2].Message.Content)
	}
	if err := s.UpdateSettings(ctx, map[string]any{"language": "de"}); err != nil {
		t.Fatal(err)
	}
	if f := next(t, s); f.Type != client.TypeError || f.Error.Code != wire.CodeInvalidSettings {
		t.Fatalf("invalid settings answered %+v", f)
	}

	if _, err := s.Send(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	end, _ := expect(t, s, client.TypeTaskEnd)
	if end.Task.Stopped == nil || !*end.Task.Stopped {
		t.Fatalf("task_end %+v", end.Task)
	}
}
