package main

import (
	"context"
	"net/http"
	"testing"
)

// TestLogoutClosesSocketsOnEveryInstance: two instances on one Redis; a
// token's sockets on both close with 4401 when it logs out through one of
// them (PROTOCOL §1.2 POST /auth/logout, §3).
func TestLogoutClosesSocketsOnEveryInstance(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	addBob(t, env, "a-long-password")
	a, b := startChatd(t, env), startChatd(t, env)
	// Both instances have subscribed to the event channel.
	rc, channel := rs.Client(), env["CHAT_NAMESPACE"]+"events"
	eventually(t, "both instances subscribed to their event channel", func() bool {
		n, err := rc.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] >= 2
	})
	tok := a.login(t, bobID, "a-long-password")
	onA, _, _ := a.openChat(t, tok, "")
	onB, _, _ := b.openChat(t, tok, "")
	other := a.login(t, bobID, "a-long-password") // another token of bob's
	keep, _, _ := b.openChat(t, other, "")

	if code := a.do(t, http.MethodPost, "/auth/logout", tok, nil, nil); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	for name, w := range map[string]*wsClient{"the same instance": onA, "the other instance": onB} {
		if code := w.closeStatusWithin(revocationWait); code != 4401 {
			t.Errorf("socket on %s closed with %d after logout, want 4401", name, code)
		}
	}
	// Another token's socket carries on.
	if got := keep.say("still here"); len(got) == 0 {
		t.Error("the socket of another token got no answer after the logout")
	}
}
