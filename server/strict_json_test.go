package server

import (
	"strings"
	"testing"

	"github.com/chatd-project/chatd/wire"
)

// TestStrictFrameKeys checks, end to end, that a frame's keys match
// exactly and that a name given twice in any object of a frame is
// bad_frame, before and after welcome (issue 11). The refused frame has no
// effect: the next frame the client gets is the error, and the one after it
// answers the client's next frame.
func TestStrictFrameKeys(t *testing.T) {
	const noAsk = "00000000-0000-0000-0000-000000000000"
	tests := []struct {
		name   string
		before bool // send before hello
		frame  string
		code   wire.Code
		ref    bool // the error carries the frame's ref
	}{
		{"Type and Protocol are not a hello", true, `{"Type":"hello","Protocol":1}`, wire.CodeBadFrame, true},
		{"protocol twice, 1 first", true, `{"type":"hello","protocol":1,"protocol":2}`, wire.CodeBadFrame, false},
		{"protocol twice, 1 last", true, `{"type":"hello","protocol":2,"protocol":1}`, wire.CodeBadFrame, false},
		{"env key twice", true, `{"type":"hello","protocol":1,"env":{"K":"a","K":"b"}}`, wire.CodeBadFrame, false},
		{"TYPE is not type", false, `{"TYPE":"zzz"}`, wire.CodeBadFrame, true},
		{"Content is not content", false, `{"type":"message","Content":"x"}`, wire.CodeInvalidField, true},
		{"content twice", false, `{"type":"message","content":"a","content":"b"}`, wire.CodeBadFrame, false},
		{"type twice", false, `{"type":"stop","type":"message","content":"x"}`, wire.CodeBadFrame, false},
		{"settings key twice, last invalid", false, `{"type":"settings_update","values":{"language":"fr","language":"zz"}}`, wire.CodeBadFrame, false},
		{"settings key twice, last valid", false, `{"type":"settings_update","values":{"language":"zz","language":"fr"}}`, wire.CodeBadFrame, false},
		{"ask_response ask_id twice", false, `{"type":"ask_response","ask_id":"x","ask_id":"` + noAsk + `","content":"x"}`, wire.CodeBadFrame, false},
		{"twice in an unknown field", false, `{"type":"message","content":"x","meta":{"a":1,"a":2}}`, wire.CodeBadFrame, false},
	}
	e, tok := chatEnv(t, withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(bearer(tok))
			c.t = t
			if !tt.before {
				c.hello(nil)
				c.untilTaskEnd()
			}
			c.send(`{"ref":"r-1",` + tt.frame[1:])
			f := c.next()
			if f["type"] != "error" || f["code"] != string(tt.code) {
				t.Fatalf("frame answered %v, want error %s", f, tt.code)
			}
			// The ref of a frame with a name twice cannot be trusted and is
			// not echoed; that of a well-formed frame is.
			if ref, ok := f["ref"]; tt.ref && ref != "r-1" || !tt.ref && ok {
				t.Fatalf("ref = %v in %v", ref, f)
			}
			if tt.before {
				c.hello(nil)
				c.untilTaskEnd()
			}
			c.send(map[string]any{"type": "message", "content": "still here"})
			if f := c.next(); f["type"] != "message" || f["content"] != "still here" {
				t.Fatalf("after the refused frame: %v", f)
			}
			c.untilTaskEnd()
		})
	}
}

// TestStrictBodyKeys checks that JSON request bodies match keys exactly and
// refuse a name given twice, at any depth, with 400 bad_request (issue 11).
func TestStrictBodyKeys(t *testing.T) {
	t.Run("login", func(t *testing.T) {
		tests := []struct {
			name   string
			body   string
			status int // 200: logged in
		}{
			{"IDENTIFIER and PassWord", `{"IDENTIFIER":"bob","PassWord":"password-bob"}`, 400},
			{"Identifier and Password", `{"Identifier":"bob","Password":"password-bob"}`, 400},
			{"password twice, right one last", `{"identifier":"bob","password":"wrong","password":"password-bob"}`, 400},
			{"password twice, the same", `{"identifier":"bob","password":"password-bob","password":"password-bob"}`, 400},
			{"identifier twice, once escaped", `{"identifier":"eve","\u0069dentifier":"bob","password":"password-bob"}`, 400},
			{"twice in an unknown field", `{"identifier":"bob","password":"password-bob","x":{"a":1,"a":2}}`, 400},
			{"unknown fields still ignored", `{"identifier":"bob","password":"password-bob","x":{"a":1,"A":2},"Identifier":"eve"}`, 200},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t)
				e.addUser("bob", "", nil)
				res, body := e.post("/auth/login", "application/json", strings.NewReader(tt.body), nil)
				if tt.status == 200 {
					if res.StatusCode != 200 {
						t.Fatalf("status = %d (%s), want 200", res.StatusCode, body)
					}
					return
				}
				expectHTTPError(t, res, body, tt.status, wire.CodeBadRequest)
			})
		}
	})
	t.Run("rename", func(t *testing.T) {
		e, tok := chatEnv(t)
		_, w := e.persistedChat(tok, nil, "the original name")
		tid := w["thread_id"].(string)
		tests := []struct{ name, body string }{
			{"Name is not name", `{"Name":"renamed"}`},
			{"name twice", `{"name":"renamed","name":"again"}`},
			{"twice in an unknown field", `{"name":"renamed","x":[{"a":1,"a":2}]}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, body := e.do("PATCH", "/threads/"+tid, []byte(tt.body), bearer(tok))
				expectHTTPError(t, res, body, 400, wire.CodeBadRequest)
				if th := e.getThread(tok, tid); th.Name != "the original name" {
					t.Fatalf("name after a refused PATCH = %q", th.Name)
				}
			})
		}
	})
}
