package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/authtest"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestPostgresUserStore runs the conformance suite on the PostgreSQL user
// store, with the tokens, throttle and flows of the store it is deployed
// beside: Redis (as chatd runs it with DATABASE_URL and REDIS_URL), and
// memory.
func TestPostgresUserStore(t *testing.T) {
	t.Run("beside Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		c := srv.Client()
		authtest.Run(t, func(t *testing.T) auth.Stores {
			st := auth.NewRedisStore(c, srv.Namespace()).Stores()
			st.Users = auth.NewPostgresUserStore(pgtest.New(t).Pool, st.Tokens, nil)
			return st
		})
	})
	t.Run("beside memory", func(t *testing.T) {
		authtest.Run(t, func(t *testing.T) auth.Stores {
			st := auth.NewMemoryStore(nil).Stores()
			st.Users = auth.NewPostgresUserStore(pgtest.New(t).Pool, st.Tokens, nil)
			return st
		})
	})
}

// TestPostgresImportUser: a user imported keeps its id, creation time,
// hash and links; importing it again changes nothing; a user whose
// identifier or link belongs to another is refused whole.
func TestPostgresImportUser(t *testing.T) {
	ctx := t.Context()
	mem := auth.NewMemoryStore(nil)
	us := auth.NewPostgresUserStore(pgtest.New(t).Pool, mem, nil)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ada := auth.PersistedUser{ID: "id-ada", CreatedAt: created,
		User: auth.User{Identifier: "ada", DisplayName: "Ada", Metadata: map[string]any{"role": "admin"}}}
	google := auth.Link{Provider: "google", Subject: "1"}
	for i, want := range []bool{true, false} {
		ok, err := us.ImportUser(ctx, ada, "hash-a", []auth.Link{google})
		if err != nil || ok != want {
			t.Fatalf("ImportUser #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	p, hash, err := us.GetUserByIdentifier(ctx, "ada")
	if err != nil || p.ID != "id-ada" || !p.CreatedAt.Equal(created) || hash != "hash-a" || p.Metadata["role"] != "admin" {
		t.Fatalf("imported user = %+v, %q, %v", p, hash, err)
	}
	if l, err := us.GetUserByLink(ctx, google); err != nil || l.ID != "id-ada" {
		t.Fatalf("GetUserByLink = %+v, %v", l, err)
	}
	for _, tc := range []struct {
		name string
		u    auth.PersistedUser
		l    []auth.Link
	}{
		{"identifier taken", auth.PersistedUser{ID: "id-2", CreatedAt: created, User: auth.User{Identifier: "ada"}}, nil},
		{"link taken", auth.PersistedUser{ID: "id-3", CreatedAt: created, User: auth.User{Identifier: "bob"}}, []auth.Link{google}},
	} {
		if ok, err := us.ImportUser(ctx, tc.u, "", tc.l); ok || !errors.Is(err, auth.ErrExists) {
			t.Errorf("%s: ImportUser = %v, %v; want ErrExists", tc.name, ok, err)
		}
		if _, err := us.GetUser(ctx, tc.u.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("%s: GetUser of the refused user: %v, want ErrNotFound", tc.name, err)
		}
	}
}
