package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingHook counts a Redis client's round trips: one per command, one
// per pipeline or transaction.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// frame is any server frame, with the bytes it came in.
type frame struct {
	Seq         int64     `json:"seq"`
	Type        string    `json:"type"`
	ID          string    `json:"id"`
	ThreadID    string    `json:"thread_id"`
	StepType    string    `json:"step_type"`
	Author      string    `json:"author"`
	Content     string    `json:"content"`
	CreatedAt   time.Time `json:"created_at"`
	ParentID    *string   `json:"parent_id"`
	Command     *string   `json:"command"`
	Streaming   *bool     `json:"streaming"`
	Stopped     *bool     `json:"stopped"`
	Interrupted *bool     `json:"interrupted"`
	Error       *bool     `json:"error"`
	Code        string    `json:"code"`
	Ref         string    `json:"ref"`
	raw         []byte
}

type env struct {
	t    *testing.T
	f    *floor
	hs   *httptest.Server
	rdb  *redis.Client
	hook *countingHook
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r := redistest.Start(t)
	rdb := r.Client()
	// A connection's handshake is not a round trip of the floor's: open
	// the connections of commands and of pipelines before counting.
	if _, err := rdb.TxPipelined(t.Context(), func(p redis.Pipeliner) error {
		p.Ping(t.Context())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	hook := &countingHook{}
	rdb.AddHook(hook)
	f, err := newFloor(t.Context(), rdb, r.Namespace(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(f.handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &env{t: t, f: f, hs: hs, rdb: rdb, hook: hook}
}

// login logs in and returns the token, checking the cookie.
func (e *env) login() string {
	e.t.Helper()
	resp, err := e.hs.Client().Post(e.hs.URL+"/auth/login", "application/json",
		strings.NewReader(`{"identifier": "load@example.com", "password": "anything"}`))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("login: status %d", resp.StatusCode)
	}
	var lr loginResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		e.t.Fatal(err)
	}
	if lr.Token == "" || lr.User == nil || lr.User.ID == "" || lr.ExpiresAt.IsZero() {
		e.t.Fatalf("login response %+v", lr)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != lr.Token || !cookie.HttpOnly || cookie.Path != "/" ||
		cookie.SameSite != http.SameSiteLaxMode {
		e.t.Fatalf("login cookie %+v", cookie)
	}
	return lr.Token
}

// dial opens a socket with header; a refused upgrade returns its status.
func (e *env) dial(header http.Header) (*websocket.Conn, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.hs.URL, "http")+"/ws", &websocket.DialOptions{
		HTTPClient: e.hs.Client(), HTTPHeader: header, Subprotocols: []string{"chat.v1"}})
	if err != nil {
		if resp == nil {
			e.t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	e.t.Cleanup(func() { _ = ws.CloseNow() })
	return ws, http.StatusSwitchingProtocols
}

func send(t *testing.T, ws *websocket.Conn, v string) {
	t.Helper()
	if err := ws.Write(t.Context(), websocket.MessageText, []byte(v)); err != nil {
		t.Fatalf("send %s: %v", v, err)
	}
}

func read(t *testing.T, ws *websocket.Conn) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("a frame of type %v", typ)
	}
	var f frame
	if err := wire.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	f.raw = b
	return f
}

// closeStatus reads until the socket closes and returns the close status.
func closeStatus(t *testing.T, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestLoginAndUpgradeRules(t *testing.T) {
	e := newEnv(t)
	tok := e.login()
	for _, tc := range []struct {
		name, ctype, body string
		want              int
	}{
		{"not JSON", "text/plain", `{"identifier": "a", "password": "b"}`, http.StatusUnsupportedMediaType},
		{"no password", "application/json", `{"identifier": "a"}`, http.StatusBadRequest},
		{"name twice", "application/json", `{"identifier": "a", "password": "b", "password": "c"}`, http.StatusBadRequest},
	} {
		resp, err := e.hs.Client().Post(e.hs.URL+"/auth/login", tc.ctype, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("login %s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	resp, err := e.hs.Client().Get(e.hs.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: status %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"another token", bearer(tok + "x"), http.StatusUnauthorized},
		{"another cookie", http.Header{"Cookie": {cookieName + "=nope"}}, http.StatusUnauthorized},
		{"token in another scheme", http.Header{"Authorization": {"Basic " + tok}}, http.StatusUnauthorized},
		{"foreign origin", http.Header{"Authorization": {"Bearer " + tok}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"bearer", bearer(tok), http.StatusSwitchingProtocols},
		{"cookie", http.Header{"Cookie": {cookieName + "=" + tok}}, http.StatusSwitchingProtocols},
	} {
		ws, status := e.dial(tc.header)
		if status != tc.want {
			t.Errorf("upgrade with %s: status %d, want %d", tc.name, status, tc.want)
		}
		if ws == nil {
			continue
		}
		if ws.Subprotocol() != "chat.v1" {
			t.Errorf("upgrade with %s: subprotocol %q", tc.name, ws.Subprotocol())
		}
		send(t, ws, `{"type": "message", "content": "too early", "ref": "r0"}`)
		if f := read(t, ws); f.Type != "error" || f.Code != "protocol" || f.Ref != "r0" {
			t.Errorf("a message before hello: %s", f.raw)
		}
		_ = ws.Close(websocket.StatusNormalClosure, "")
	}
}

func TestChat(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ws, status := e.dial(bearer(e.login()))
	if ws == nil {
		t.Fatalf("upgrade: status %d", status)
	}

	before := e.hook.n.Load()
	send(t, ws, `{"type": "hello", "protocol": 1, "client_type": "api"}`)
	w := read(t, ws)
	if got := e.hook.n.Load() - before; got != 1 {
		t.Errorf("hello: %d Redis round trips, want 1", got)
	}
	var welcome wire.Welcome
	if err := json.Unmarshal(w.raw, &welcome); err != nil {
		t.Fatal(err)
	}
	if welcome.Type != "welcome" || welcome.Protocol != 1 || !wire.ValidID(welcome.SessionID) ||
		!wire.ValidID(welcome.ThreadID) || welcome.Resumed != "none" || welcome.Replay != "" ||
		welcome.Epoch == "" || welcome.LastSeq != 0 || welcome.User == nil || welcome.ChatProfile == nil ||
		welcome.Settings.Values == nil || welcome.Settings.Schema == nil {
		t.Fatalf("welcome %s", w.raw)
	}
	if ps, ok := welcome.Profiles.([]any); !ok || len(ps) != 1 {
		t.Errorf("welcome profiles %v", welcome.Profiles)
	}
	k := e.f.store.keys(welcome.SessionID, welcome.ThreadID)
	if got := e.rdb.HGet(ctx, k.rec, "thread").Val(); got != welcome.ThreadID {
		t.Errorf("the record's thread is %q, want %q", got, welcome.ThreadID)
	}
	if ttl := e.rdb.PTTL(ctx, k.rec).Val(); ttl <= 0 || ttl > sessionTTL {
		t.Errorf("the record's TTL is %v", ttl)
	}

	send(t, ws, `{"type": "message", "content": " ", "ref": "r1"}`)
	if f := read(t, ws); f.Type != "error" || f.Code != "invalid_field" || f.Ref != "r1" {
		t.Errorf("an empty message: %s", f.raw)
	}

	var order []string
	for i, content := range []string{"hello floor", "second message"} {
		seq := int64(4*i + 1)
		before := e.hook.n.Load()
		send(t, ws, `{"type": "message", "content": "`+content+`", "id": "client-`+strconv.Itoa(i)+`", "command": "go"}`)
		fs := []frame{read(t, ws), read(t, ws), read(t, ws), read(t, ws)}
		if got := e.hook.n.Load() - before; got != 1 {
			t.Errorf("message %d: %d Redis round trips, want 1", i, got)
		}
		echo, start, reply, end := fs[0], fs[1], fs[2], fs[3]
		if echo.Type != "message" || echo.Seq != seq || echo.StepType != "user_message" || echo.Content != content ||
			echo.ThreadID != welcome.ThreadID || !wire.ValidID(echo.ID) || echo.Author != welcome.User.Identifier ||
			echo.Command == nil || *echo.Command != "go" || echo.ParentID != nil || echo.Streaming == nil ||
			*echo.Streaming || echo.CreatedAt.IsZero() {
			t.Errorf("message %d: echo %s", i, echo.raw)
		}
		if start.Type != "task_start" || start.Seq != seq+1 {
			t.Errorf("message %d: task_start %s", i, start.raw)
		}
		if reply.Type != "message" || reply.Seq != seq+2 || reply.StepType != "assistant_message" ||
			reply.Content != "echo: "+content || reply.ThreadID != welcome.ThreadID || !wire.ValidID(reply.ID) ||
			reply.Author == "" || reply.Command != nil || reply.ParentID != nil || reply.Streaming == nil || *reply.Streaming {
			t.Errorf("message %d: reply %s", i, reply.raw)
		}
		if end.Type != "task_end" || end.Seq != seq+3 || end.Stopped == nil || *end.Stopped ||
			end.Interrupted == nil || *end.Interrupted || end.Error == nil || *end.Error {
			t.Errorf("message %d: task_end %s", i, end.raw)
		}

		// Both steps are in the thread, in order, and the four frames in the
		// log, stored as sent.
		for _, f := range []frame{echo, reply} {
			var st step
			if err := json.Unmarshal([]byte(e.rdb.HGet(ctx, k.steps, f.ID).Val()), &st); err != nil ||
				st.ID != f.ID || st.Type != f.StepType || st.Content != f.Content || st.Author != f.Author {
				t.Errorf("message %d: step %s is %+v (%v)", i, f.ID, st, err)
			}
			if score := e.rdb.ZScore(ctx, k.order, f.ID).Val(); score != float64(f.Seq) {
				t.Errorf("message %d: step %s has position %v, want %d", i, f.ID, score, f.Seq)
			}
			order = append(order, f.ID)
		}
		entries := e.rdb.XRange(ctx, k.log, strconv.FormatInt(seq, 10)+"-0", strconv.FormatInt(seq+3, 10)+"-0").Val()
		if len(entries) != 4 {
			t.Fatalf("message %d: %d log entries, want 4", i, len(entries))
		}
		for j, en := range entries {
			p, _ := en.Values["p"].(string)
			if want := strconv.FormatInt(seq+int64(j), 10) + "-0"; en.ID != want ||
				string(wire.WithSeq([]byte(p), seq+int64(j))) != string(fs[j].raw) {
				t.Errorf("message %d: log entry %s %q, want %s for %s", i, en.ID, p, want, fs[j].raw)
			}
		}
	}
	if got := e.rdb.ZRange(ctx, k.order, 0, -1).Val(); !slices.Equal(got, order) {
		t.Errorf("thread order %v, want %v", got, order)
	}
	if n := e.rdb.HLen(ctx, k.steps).Val(); n != 4 {
		t.Errorf("%d steps, want 4", n)
	}
	if got := e.rdb.HGet(ctx, k.rec, "seq").Val(); got != "8" {
		t.Errorf("the record's seq is %q, want 8", got)
	}
	for _, key := range []string{k.rec, k.log, k.ids} {
		if ttl := e.rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > sessionTTL {
			t.Errorf("%s: TTL %v", key, ttl)
		}
	}

	// A repeated client id gets its original echo with its seq, in one
	// round trip, and nothing is stored.
	before = e.hook.n.Load()
	send(t, ws, `{"type": "message", "content": "again", "id": "client-0"}`)
	dup := read(t, ws)
	if got := e.hook.n.Load() - before; got != 1 {
		t.Errorf("repeated message: %d Redis round trips, want 1", got)
	}
	if dup.Type != "message" || dup.Seq != 1 || dup.ID != order[0] || dup.Content != "hello floor" {
		t.Errorf("repeated message: %s", dup.raw)
	}
	if n := e.rdb.XLen(ctx, k.log).Val(); n != 8 {
		t.Errorf("%d log entries after a repeated message, want 8", n)
	}
	send(t, ws, `{"type": "message", "content": "third"}`)
	if f := read(t, ws); f.Type != "message" || f.Seq != 9 || f.Content != "third" {
		t.Errorf("the message after a repeated one: %s", f.raw)
	}
	for range 3 {
		read(t, ws)
	}

	// A shutdown closes the socket with 1001.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.f.shutdown(sctx) }()
	if got := closeStatus(t, ws); got != websocket.StatusGoingAway {
		t.Errorf("close status %v at shutdown, want 1001", got)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestSessionGone(t *testing.T) {
	e := newEnv(t)
	ws, status := e.dial(bearer(e.login()))
	if ws == nil {
		t.Fatalf("upgrade: status %d", status)
	}
	send(t, ws, `{"type": "hello", "protocol": 1}`)
	w := read(t, ws)
	var welcome wire.Welcome
	if err := json.Unmarshal(w.raw, &welcome); err != nil {
		t.Fatal(err)
	}
	e.rdb.Del(t.Context(), e.f.store.keys(welcome.SessionID, welcome.ThreadID).rec)
	send(t, ws, `{"type": "message", "content": "anyone there?"}`)
	if got := closeStatus(t, ws); got != wire.CloseGone {
		t.Errorf("close status %v, want 4410", got)
	}
}
