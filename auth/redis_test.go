package auth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/authtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	authtest.Run(t, func(t *testing.T) auth.Stores {
		return auth.NewRedisStore(c, srv.Namespace()).Stores()
	})
}

// keys returns the keys under ns.
func keys(t *testing.T, c *redis.Client, ns string) []string {
	t.Helper()
	ks, err := c.Keys(context.Background(), ns+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	return ks
}

func TestRedisKeyLayout(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client()
	ns := srv.Namespace()
	st := auth.NewRedisStore(c, ns)

	u, err := st.CreateUser(ctx, auth.User{Identifier: "ada@example.com"}, "hash", false)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	now := time.Now()
	rec := auth.TokenRecord{Hash: auth.HashToken("tok"), UserID: u.ID, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), IdleUntil: now.Add(time.Minute), LastUsed: now}
	if _, err := st.CreateToken(ctx, rec, 50); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if _, _, err := st.Hit(ctx, "k", time.Minute); err != nil {
		t.Fatalf("Hit: %v", err)
	}

	userKey := ns + "u:{u:" + u.ID + "}"
	for _, tc := range []struct {
		key, typ string
		ttl      time.Duration // 0: none
	}{
		{userKey, "hash", 0},
		{userKey + ":tokens", "zset", 0},
		{ns + "u:ident:ada@example.com", "string", 0},
		{ns + "users", "set", 0},
		{ns + "tok:" + rec.Hash, "hash", time.Hour},
		{ns + "thr:k", "string", time.Minute},
	} {
		typ, err := c.Type(ctx, tc.key).Result()
		if err != nil || typ != tc.typ {
			t.Errorf("TYPE %s = %q, %v; want %s", tc.key, typ, err, tc.typ)
			continue
		}
		ttl, err := c.PTTL(ctx, tc.key).Result()
		switch {
		case err != nil:
			t.Errorf("PTTL %s: %v", tc.key, err)
		case tc.ttl == 0 && ttl >= 0:
			t.Errorf("PTTL %s = %v, want none", tc.key, ttl)
		case tc.ttl != 0 && (ttl <= tc.ttl-10*time.Second || ttl > tc.ttl):
			t.Errorf("PTTL %s = %v, want about %v", tc.key, ttl, tc.ttl)
		}
	}
	if got := len(keys(t, c, ns)); got != 6 {
		t.Errorf("%d keys under the namespace, want 6: %q", got, keys(t, c, ns))
	}
	md, err := c.HGet(ctx, userKey, "metadata").Result()
	if err != nil || md != "{}" {
		t.Errorf("metadata field = %q, %v; want {}", md, err)
	}

	// Deleting the user leaves none of its keys behind.
	if err := st.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	for _, k := range keys(t, c, ns) {
		if k != ns+"thr:k" {
			t.Errorf("key %s left after DeleteUser", k)
		}
	}
}

func TestRedisLinkKeyLayout(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client()
	ns := srv.Namespace()
	st := auth.NewRedisStore(c, ns)

	google := auth.Link{Provider: "google", Subject: "1234567890"}
	odd := auth.Link{Provider: "a:b", Subject: "c:{d}"}
	u, err := st.CreateLinkedUser(ctx, auth.User{Identifier: "ada@example.com"}, google)
	if err != nil {
		t.Fatalf("CreateLinkedUser: %v", err)
	}
	if err := st.AddLink(ctx, u.ID, odd); err != nil {
		t.Fatalf("AddLink: %v", err)
	}
	if err := st.PutFlow(ctx, "state", []byte("v"), time.Minute); err != nil {
		t.Fatalf("PutFlow: %v", err)
	}

	userKey := ns + "u:{u:" + u.ID + "}"
	for _, tc := range []struct {
		key, typ string
		ttl      time.Duration // 0: none
	}{
		{userKey, "hash", 0},
		{userKey + ":links", "set", 0},
		{ns + "u:ident:ada@example.com", "string", 0},
		{ns + "link:6:google:1234567890", "string", 0},
		{ns + "link:3:a:b:c:{d}", "string", 0},
		{ns + "users", "set", 0},
		{ns + "flow:state", "string", time.Minute},
	} {
		typ, err := c.Type(ctx, tc.key).Result()
		if err != nil || typ != tc.typ {
			t.Errorf("TYPE %s = %q, %v; want %s", tc.key, typ, err, tc.typ)
			continue
		}
		ttl, err := c.PTTL(ctx, tc.key).Result()
		switch {
		case err != nil:
			t.Errorf("PTTL %s: %v", tc.key, err)
		case tc.ttl == 0 && ttl >= 0:
			t.Errorf("PTTL %s = %v, want none", tc.key, ttl)
		case tc.ttl != 0 && (ttl <= tc.ttl-10*time.Second || ttl > tc.ttl):
			t.Errorf("PTTL %s = %v, want about %v", tc.key, ttl, tc.ttl)
		}
	}
	if got := len(keys(t, c, ns)); got != 7 {
		t.Errorf("%d keys under the namespace, want 7: %q", got, keys(t, c, ns))
	}
	for _, k := range []string{ns + "link:6:google:1234567890", ns + "link:3:a:b:c:{d}"} {
		if id, err := c.Get(ctx, k).Result(); err != nil || id != u.ID {
			t.Errorf("GET %s = %q, %v; want the user's id", k, id, err)
		}
	}
	members, err := c.SMembers(ctx, userKey+":links").Result()
	slices.Sort(members)
	if err != nil || !slices.Equal(members, []string{"3:a:b:c:{d}", "6:google:1234567890"}) {
		t.Errorf("SMEMBERS of the user's links = %q, %v", members, err)
	}

	// Deleting the user leaves none of its keys behind, its links neither.
	if err := st.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	for _, k := range keys(t, c, ns) {
		if k != ns+"flow:state" {
			t.Errorf("key %s left after DeleteUser", k)
		}
	}
	if _, err := st.TakeFlow(ctx, "state"); err != nil {
		t.Fatalf("TakeFlow: %v", err)
	}
	if ks := keys(t, c, ns); len(ks) != 0 {
		t.Errorf("keys left after TakeFlow: %q", ks)
	}
}

func TestRedisNamespaces(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client()
	a, b := auth.NewRedisStore(c, srv.Namespace()), auth.NewRedisStore(c, srv.Namespace())
	if _, err := a.CreateUser(ctx, auth.User{Identifier: "ada"}, "", false); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if _, _, err := b.GetUserByIdentifier(ctx, "ada"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("another namespace sees the user: %v", err)
	}
	if _, err := b.CreateUser(ctx, auth.User{Identifier: "ada"}, "", false); err != nil {
		t.Fatalf("CreateUser in another namespace: %v", err)
	}
}

// TestRedisDown checks that a store that cannot reach Redis returns an
// error that no caller mistakes for a missing record.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.RequireOwn()
	// No retries: the errors come at once.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	st := auth.NewRedisStore(c, srv.Namespace())
	srv.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"GetUser", func() error { _, err := st.GetUser(ctx, "x"); return err }},
		{"GetUserByIdentifier", func() error { _, _, err := st.GetUserByIdentifier(ctx, "x"); return err }},
		{"GetToken", func() error { _, err := st.GetToken(ctx, "x"); return err }},
		{"RevokeToken", func() error { _, err := st.RevokeToken(ctx, "x"); return err }},
		{"Count", func() error { _, _, err := st.Count(ctx, "x"); return err }},
		{"UpdateMetadata", func() error {
			_, err := st.UpdateMetadata(ctx, "x", func(map[string]any) error { return nil })
			return err
		}},
		{"GetUserByLink", func() error { _, err := st.GetUserByLink(ctx, auth.Link{Provider: "p", Subject: "s"}); return err }},
		{"RemoveLink", func() error { return st.RemoveLink(ctx, "x", auth.Link{Provider: "p", Subject: "s"}) }},
		{"Links", func() error { _, err := st.Links(ctx, "x"); return err }},
		{"TakeFlow", func() error { _, err := st.TakeFlow(ctx, "x"); return err }},
	}
	for _, tc := range calls {
		err := tc.call()
		if err == nil || errors.Is(err, auth.ErrNotFound) || !strings.HasPrefix(err.Error(), "auth: redis") {
			t.Errorf("%s with Redis down: err = %v, want a wrapped Redis error", tc.name, err)
		}
	}
}
