// Package objects builds the protocol's objects (User, ThreadSummary,
// Thread, Step) from the records of the stores, and names threads.
package objects

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// User is the protocol's User object of a user; nil for an anonymous one.
func User(u *auth.PersistedUser) *wire.User {
	if u == nil || u.Anonymous {
		return nil
	}
	md := u.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return &wire.User{ID: u.ID, Identifier: u.Identifier, DisplayName: wire.Null(u.DisplayName),
		Metadata: md, CreatedAt: u.CreatedAt.UTC()}
}

// Summary is the protocol's ThreadSummary object.
func Summary(t session.ThreadSummary) wire.ThreadSummary {
	return wire.ThreadSummary{ID: t.ID, Name: t.Name, ChatProfile: wire.Null(t.ChatProfile),
		CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC()}
}

// Thread is the protocol's Thread object of a persisted thread.
func Thread(t session.Thread, u *auth.PersistedUser) wire.Thread {
	md := map[string]any{}
	for k, v := range t.Metadata {
		md[k] = v
	}
	if _, ok := md["chat_profile"]; !ok {
		md["chat_profile"] = wire.Null(t.ChatProfile)
	}
	out := wire.Thread{ID: t.ID, Name: t.Name, ChatProfile: wire.Null(t.ChatProfile), CreatedAt: t.CreatedAt.UTC(),
		UpdatedAt: t.UpdatedAt.UTC(), UserID: t.UserID, Metadata: md, Tags: t.Tags,
		Steps: make([]wire.Step, 0, len(t.Steps))}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if u != nil {
		out.UserIdentifier = u.Identifier
	}
	for _, st := range t.Steps {
		out.Steps = append(out.Steps, Step(st))
	}
	return out
}

// Step is the protocol's Step object.
func Step(st session.Step) wire.Step {
	md := st.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return wire.Step{ID: st.ID, Type: st.Type, Author: st.Author, Content: st.Content,
		CreatedAt: st.CreatedAt.UTC(), ParentID: wire.Null(st.ParentID), Command: wire.Null(st.Command), Metadata: md}
}

// SessionThread builds the Thread of a session from its record and steps.
func SessionThread(rec session.Record, u *auth.PersistedUser, steps []session.Step) wire.Thread {
	t := wire.Thread{ID: rec.ThreadID, ChatProfile: wire.Null(rec.ChatProfile), CreatedAt: rec.CreatedAt.UTC(),
		UpdatedAt: rec.CreatedAt.UTC(), UserID: rec.UserID, Tags: []string{}, Steps: make([]wire.Step, 0, len(steps)),
		Metadata: map[string]any{"chat_profile": wire.Null(rec.ChatProfile), "chat_settings": rec.Settings}}
	if u != nil {
		t.UserIdentifier = u.Identifier
	}
	for _, st := range steps {
		t.Steps = append(t.Steps, Step(st))
		if st.Type == "user_message" && t.Name == "" {
			t.Name = ThreadName(st.Content)
		}
		if st.CreatedAt.After(t.UpdatedAt) {
			t.UpdatedAt = st.CreatedAt.UTC()
		}
	}
	return t
}

// ThreadName is a thread's name from its first user message: the first 60
// code points, whitespace collapsed, cut at a word boundary with "…".
func ThreadName(content string) string {
	name := strings.Join(strings.FieldsFunc(content, unicode.IsSpace), " ")
	const max = 60
	if utf8.RuneCountInString(name) <= max {
		return name
	}
	runes := []rune(name)
	cut := runes[:max]
	if i := lastSpace(cut); i > 0 && runes[max] != ' ' {
		cut = cut[:i]
	}
	return strings.TrimRight(string(cut), " ") + "…"
}

func lastSpace(rs []rune) int {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i] == ' ' {
			return i
		}
	}
	return -1
}

// Truncate cuts s to at most n bytes at a character boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// IsBidiControl reports the bidirectional formatting characters, which
// can make a name display as something else.
func IsBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}
