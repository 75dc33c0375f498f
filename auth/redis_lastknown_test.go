package auth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestLastKnownUsers: while the database cannot answer, GetUser answers
// with the last copy of a user read before; a user never read, or deleted,
// has none; nor has one who holds no token (the copy is for them), nor one
// read after their tokens were revoked (a deletion revokes them first, so
// a read that overlaps it cannot put the copy back); a copy follows the
// user's metadata.
func TestLastKnownUsers(t *testing.T) {
	srv := pgtest.StartServer(t)
	ctx := t.Context()
	pool, err := pgdb.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pgdb.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	ns := rs.Namespace()
	mem := auth.NewMemoryStore(nil)
	users := auth.WithLastKnown(auth.NewPostgresUserStore(pool, mem, nil), rs.Client(), ns)

	seen, err := users.CreateUser(ctx, auth.User{Identifier: "seen@example.com", DisplayName: "Seen",
		Metadata: map[string]any{"role": "admin"}}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	create := func(identifier string) *auth.PersistedUser {
		t.Helper()
		u, err := users.CreateUser(ctx, auth.User{Identifier: identifier}, "", false)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	unseen, gone := create("unseen@example.com"), create("gone@example.com")
	tokenless, late := create("tokenless@example.com"), create("late@example.com")
	tokens := auth.NewRedisStore(rs.Client(), ns)
	for i, id := range []string{seen.ID, gone.ID, late.ID} {
		now := time.Now()
		if _, err := tokens.CreateToken(ctx, auth.TokenRecord{Hash: fmt.Sprintf("%064d", i), UserID: id, CreatedAt: now,
			ExpiresAt: now.Add(time.Hour), IdleUntil: now.Add(time.Hour), LastUsed: now}, 10); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{seen.ID, gone.ID, tokenless.ID, late.ID} {
		if _, err := users.GetUser(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	copyOf := ns + "u:{u:" + late.ID + "}:known"
	if n, err := rs.Client().Exists(ctx, copyOf).Result(); err != nil || n != 1 {
		t.Fatalf("copy of a user with a token: %d, %v; want one", n, err)
	}
	// late's deletion, as chatd users delete makes it, with a read of
	// late by a running instance (its chat-end handler) between the
	// database's deletion and the copy's: here, the copy goes first.
	if _, err := tokens.RevokeUserTokens(ctx, late.ID); err != nil {
		t.Fatal(err)
	}
	if err := rs.Client().Del(ctx, copyOf).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := users.UpdateMetadata(ctx, late.ID, func(md map[string]any) error {
		md["chats_ended"] = 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := users.GetUser(ctx, late.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := rs.Client().Exists(ctx, copyOf).Result(); err != nil || n != 0 {
		t.Fatalf("copy of a user read after their tokens were revoked: %d, %v; want none", n, err)
	}
	if _, err := users.UpdateMetadata(ctx, seen.ID, func(md map[string]any) error {
		md["role"] = "viewer"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := users.DeleteUser(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	want, err := users.GetUser(ctx, seen.ID)
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := users.GetUser(short, seen.ID)
	if err != nil || got.ID != want.ID || got.Identifier != want.Identifier || got.DisplayName != want.DisplayName ||
		got.Metadata["role"] != "viewer" || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("GetUser with the database stopped: %+v, %v; want the last copy %+v", got, err, want)
	}
	for _, id := range []string{unseen.ID, gone.ID, tokenless.ID, late.ID} {
		if got, err := users.GetUser(short, id); err == nil || errors.Is(err, auth.ErrNotFound) {
			t.Errorf("GetUser of %s with the database stopped: %+v, %v; want the database's error", id, got, err)
		}
	}
}
