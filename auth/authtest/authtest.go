// Package authtest is the conformance suite of the auth stores: every
// implementation of auth.UserStore, auth.TokenStore and auth.ThrottleStore
// runs it from its tests.
package authtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
)

// Run runs the conformance suite. newStores returns empty stores, or stores
// that nothing else uses, for one test; they must read the real clock,
// since some subtests wait (briefly) for tokens and throttle windows to
// expire.
func Run(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	t.Run("Users", func(t *testing.T) { testUsers(t, newStores) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, newStores) })
	t.Run("Throttle", func(t *testing.T) { testThrottle(t, newStores) })
}

// waitFor polls cond until it holds, failing t after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustCreate(t *testing.T, us auth.UserStore, u auth.User, hash string, anon bool) *auth.PersistedUser {
	t.Helper()
	p, err := us.CreateUser(context.Background(), u, hash, anon)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", u.Identifier, err)
	}
	return p
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func testUsers(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	ctx := context.Background()

	t.Run("CreateGet", func(t *testing.T) {
		us := newStores(t).Users
		before := time.Now().Add(-time.Second)
		p := mustCreate(t, us, auth.User{Identifier: "ada@example.com", DisplayName: "Ada"}, "h1", false)
		if _, err := uuid.Parse(p.ID); err != nil {
			t.Errorf("ID %q is not a UUID: %v", p.ID, err)
		}
		if p.CreatedAt.Location() != time.UTC || p.CreatedAt.Before(before) || p.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("CreatedAt = %v, want now in UTC", p.CreatedAt)
		}
		if p.Metadata == nil {
			t.Errorf("Metadata is nil, want an empty map")
		}
		got, err := us.GetUser(ctx, p.ID)
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		assertUser(t, got, p)
		got, hash, err := us.GetUserByIdentifier(ctx, "ada@example.com")
		if err != nil {
			t.Fatalf("GetUserByIdentifier: %v", err)
		}
		assertUser(t, got, p)
		if hash != "h1" {
			t.Errorf("hash = %q, want h1", hash)
		}
	})

	t.Run("Exists", func(t *testing.T) {
		us := newStores(t).Users
		first := mustCreate(t, us, auth.User{Identifier: "ada"}, "h1", false)
		for _, anon := range []bool{false, true} {
			_, err := us.CreateUser(ctx, auth.User{Identifier: "ada"}, "h2", anon)
			wantErr(t, "CreateUser of a taken identifier", err, auth.ErrExists)
		}
		got, hash, err := us.GetUserByIdentifier(ctx, "ada")
		if err != nil || got.ID != first.ID || hash != "h1" {
			t.Fatalf("after ErrExists: got %v %q %v, want the first user", got, hash, err)
		}
		if list, _ := us.ListUsers(ctx); len(list) != 1 {
			t.Fatalf("ListUsers after ErrExists: %d users, want 1", len(list))
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		us := newStores(t).Users
		mustCreate(t, us, auth.User{Identifier: "someone"}, "", false)
		id := uuid.NewString()
		calls := []struct {
			name string
			call func() error
		}{
			{"GetUser", func() error { _, err := us.GetUser(ctx, id); return err }},
			{"GetUserByIdentifier", func() error { _, _, err := us.GetUserByIdentifier(ctx, "nobody"); return err }},
			{"DeleteUser", func() error { return us.DeleteUser(ctx, id) }},
			{"SetPasswordHash", func() error { return us.SetPasswordHash(ctx, id, "h") }},
			{"UpdateMetadata", func() error {
				_, err := us.UpdateMetadata(ctx, id, func(map[string]any) error { return nil })
				return err
			}},
		}
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) { wantErr(t, c.name, c.call(), auth.ErrNotFound) })
		}
	})

	t.Run("PasswordHash", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreate(t, us, auth.User{Identifier: "header-user"}, "", false)
		if _, hash, err := us.GetUserByIdentifier(ctx, "header-user"); err != nil || hash != "" {
			t.Fatalf("hash of a user without password = %q, %v; want empty", hash, err)
		}
		if err := us.SetPasswordHash(ctx, p.ID, "$argon2id$new"); err != nil {
			t.Fatalf("SetPasswordHash: %v", err)
		}
		if _, hash, err := us.GetUserByIdentifier(ctx, "header-user"); err != nil || hash != "$argon2id$new" {
			t.Fatalf("hash = %q, %v; want the new one", hash, err)
		}
	})

	t.Run("MetadataRoundTrip", func(t *testing.T) {
		us := newStores(t).Users
		md := map[string]any{
			"plan":   "pro",
			"score":  42,
			"ratio":  0.25,
			"big":    int64(1) << 40,
			"admin":  true,
			"none":   nil,
			"tags":   []any{"a", 1, false},
			"nested": map[string]any{"deeper": map[string]any{"n": -3, "s": "x"}, "list": []any{map[string]any{"k": "v"}}},
		}
		want := map[string]any{
			"plan":   "pro",
			"score":  float64(42),
			"ratio":  0.25,
			"big":    float64(int64(1) << 40),
			"admin":  true,
			"none":   nil,
			"tags":   []any{"a", float64(1), false},
			"nested": map[string]any{"deeper": map[string]any{"n": float64(-3), "s": "x"}, "list": []any{map[string]any{"k": "v"}}},
		}
		p := mustCreate(t, us, auth.User{Identifier: "md", Metadata: md}, "", false)
		if !reflect.DeepEqual(p.Metadata, want) {
			t.Errorf("CreateUser metadata = %#v, want %#v", p.Metadata, want)
		}
		// The store owns its copy: changing what was passed in or handed
		// out changes nothing stored.
		md["plan"] = "changed"
		p.Metadata["plan"] = "changed"
		got, err := us.GetUser(ctx, p.ID)
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if !reflect.DeepEqual(got.Metadata, want) {
			t.Errorf("GetUser metadata = %#v, want %#v", got.Metadata, want)
		}

		_, err = us.CreateUser(ctx, auth.User{Identifier: "bad", Metadata: map[string]any{"f": func() {}}}, "", false)
		if err == nil {
			t.Errorf("CreateUser with metadata that is not JSON: no error")
		}
	})

	t.Run("UpdateMetadata", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreate(t, us, auth.User{Identifier: "u", Metadata: map[string]any{"keep": "me"}}, "", false)
		got, err := us.UpdateMetadata(ctx, p.ID, func(md map[string]any) error {
			md["nested"] = map[string]any{"n": 1}
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateMetadata: %v", err)
		}
		want := map[string]any{"keep": "me", "nested": map[string]any{"n": float64(1)}}
		if !reflect.DeepEqual(got.Metadata, want) {
			t.Errorf("returned metadata = %#v, want %#v", got.Metadata, want)
		}
		if got.ID != p.ID || got.Identifier != "u" {
			t.Errorf("returned user = %+v, want the same user", got)
		}

		boom := errors.New("boom")
		_, err = us.UpdateMetadata(ctx, p.ID, func(md map[string]any) error {
			md["keep"] = "lost"
			return boom
		})
		wantErr(t, "UpdateMetadata whose fn fails", err, boom)
		stored, err := us.GetUser(ctx, p.ID)
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if !reflect.DeepEqual(stored.Metadata, want) {
			t.Errorf("after a failed update metadata = %#v, want %#v", stored.Metadata, want)
		}
	})

	t.Run("ConcurrentIncrements", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreate(t, us, auth.User{Identifier: "counter"}, "", false)
		const goroutines, each = 20, 5
		var wg sync.WaitGroup
		errs := make(chan error, goroutines*each)
		for range goroutines {
			wg.Go(func() {
				for range each {
					_, err := us.UpdateMetadata(ctx, p.ID, func(md map[string]any) error {
						n, _ := md["n"].(float64)
						md["n"] = n + 1
						return nil
					})
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("UpdateMetadata: %v", err)
		}
		got, err := us.GetUser(ctx, p.ID)
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if got.Metadata["n"] != float64(goroutines*each) {
			t.Fatalf("n = %v, want %d", got.Metadata["n"], goroutines*each)
		}
	})

	t.Run("List", func(t *testing.T) {
		us := newStores(t).Users
		if list, err := us.ListUsers(ctx); err != nil || len(list) != 0 {
			t.Fatalf("ListUsers of an empty store = %v, %v", list, err)
		}
		for _, id := range []string{"carol", "alice", "bob"} {
			mustCreate(t, us, auth.User{Identifier: id}, "", false)
		}
		mustCreate(t, us, auth.User{Identifier: "anon:" + uuid.NewString()}, "", true)
		bob, _, _ := us.GetUserByIdentifier(ctx, "bob")
		if err := us.DeleteUser(ctx, bob.ID); err != nil {
			t.Fatalf("DeleteUser: %v", err)
		}
		list, err := us.ListUsers(ctx)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		var ids []string
		for _, u := range list {
			ids = append(ids, u.Identifier)
		}
		if !slices.Equal(ids, []string{"alice", "carol"}) {
			t.Fatalf("ListUsers = %q, want [alice carol] (sorted, no anonymous, no deleted)", ids)
		}
	})

	t.Run("Anonymous", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreate(t, us, auth.User{Identifier: "anon:1"}, "", true)
		got, err := us.GetUser(ctx, p.ID)
		if err != nil || !got.Anonymous {
			t.Fatalf("GetUser of an anonymous user = %+v, %v; want Anonymous", got, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		st := newStores(t)
		us, ts := st.Users, st.Tokens
		p := mustCreate(t, us, auth.User{Identifier: "gone"}, "h", false)
		other := mustCreate(t, us, auth.User{Identifier: "stays"}, "h", false)
		now := time.Now()
		for i, uid := range []string{p.ID, p.ID, other.ID} {
			if _, err := ts.CreateToken(ctx, tokenRec(fmt.Sprint("del", i), uid, now), 0); err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
		}
		if err := us.DeleteUser(ctx, p.ID); err != nil {
			t.Fatalf("DeleteUser: %v", err)
		}
		_, err := us.GetUser(ctx, p.ID)
		wantErr(t, "GetUser after DeleteUser", err, auth.ErrNotFound)
		_, _, err = us.GetUserByIdentifier(ctx, "gone")
		wantErr(t, "GetUserByIdentifier after DeleteUser", err, auth.ErrNotFound)
		for _, h := range []string{"del0", "del1"} {
			_, err := ts.GetToken(ctx, h)
			wantErr(t, "GetToken of a deleted user's token", err, auth.ErrNotFound)
		}
		if _, err := ts.GetToken(ctx, "del2"); err != nil {
			t.Errorf("another user's token after DeleteUser: %v", err)
		}
		wantErr(t, "DeleteUser twice", us.DeleteUser(ctx, p.ID), auth.ErrNotFound)
		again := mustCreate(t, us, auth.User{Identifier: "gone"}, "", false)
		if again.ID == p.ID {
			t.Errorf("recreated user has the old id")
		}
	})
}

func assertUser(t *testing.T, got, want *auth.PersistedUser) {
	t.Helper()
	if got.ID != want.ID || got.Identifier != want.Identifier || got.DisplayName != want.DisplayName ||
		got.Anonymous != want.Anonymous || !got.CreatedAt.Equal(want.CreatedAt) ||
		!reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Fatalf("user = %+v, want %+v", got, want)
	}
}

// tokenRec returns a token record created at created, expiring in a day.
func tokenRec(hash, userID string, created time.Time) auth.TokenRecord {
	return auth.TokenRecord{
		Hash:      hash,
		UserID:    userID,
		CreatedAt: created,
		ExpiresAt: created.Add(24 * time.Hour),
		IdleUntil: created.Add(2 * time.Hour),
		LastUsed:  created,
	}
}

func assertToken(t *testing.T, got, want auth.TokenRecord) {
	t.Helper()
	if got.Hash != want.Hash || got.UserID != want.UserID || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.IdleUntil.Equal(want.IdleUntil) || !got.LastUsed.Equal(want.LastUsed) {
		t.Fatalf("token = %+v, want %+v", got, want)
	}
}

func testTokens(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)

	t.Run("CreateGet", func(t *testing.T) {
		ts := newStores(t).Tokens
		rec := tokenRec("h1", "u1", now)
		rec.LastUsed = now.Add(123 * time.Nanosecond) // full precision
		if revoked, err := ts.CreateToken(ctx, rec, 50); err != nil || len(revoked) != 0 {
			t.Fatalf("CreateToken = %v, %v", revoked, err)
		}
		got, err := ts.GetToken(ctx, "h1")
		if err != nil {
			t.Fatalf("GetToken: %v", err)
		}
		assertToken(t, got, rec)
		_, err = ts.GetToken(ctx, "h2")
		wantErr(t, "GetToken of an unknown hash", err, auth.ErrNotFound)
	})

	t.Run("Touch", func(t *testing.T) {
		ts := newStores(t).Tokens
		rec := tokenRec("h1", "u1", now)
		if _, err := ts.CreateToken(ctx, rec, 0); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		rec.LastUsed, rec.IdleUntil = now.Add(time.Minute), now.Add(time.Minute+2*time.Hour)
		if err := ts.TouchToken(ctx, "h1", rec.LastUsed, rec.IdleUntil); err != nil {
			t.Fatalf("TouchToken: %v", err)
		}
		got, err := ts.GetToken(ctx, "h1")
		if err != nil {
			t.Fatalf("GetToken: %v", err)
		}
		assertToken(t, got, rec)
		wantErr(t, "TouchToken of an unknown hash", ts.TouchToken(ctx, "nope", now, now), auth.ErrNotFound)
		if _, err := ts.GetToken(ctx, "nope"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("TouchToken of an unknown hash created it: %v", err)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		ts := newStores(t).Tokens
		rec := tokenRec("h1", "u1", now)
		if _, err := ts.CreateToken(ctx, rec, 0); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		got, err := ts.RevokeToken(ctx, "h1")
		if err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		assertToken(t, got, rec)
		_, err = ts.GetToken(ctx, "h1")
		wantErr(t, "GetToken after RevokeToken", err, auth.ErrNotFound)
		_, err = ts.RevokeToken(ctx, "h1")
		wantErr(t, "RevokeToken twice", err, auth.ErrNotFound)
		wantErr(t, "TouchToken after RevokeToken", ts.TouchToken(ctx, "h1", now, now), auth.ErrNotFound)
	})

	t.Run("Cap", func(t *testing.T) {
		ts := newStores(t).Tokens
		const max = 3
		// Created out of order: the oldest by CreatedAt go first.
		order := []int{2, 0, 1}
		for _, i := range order {
			if revoked, err := ts.CreateToken(ctx, tokenRec(fmt.Sprint("t", i), "u1", now.Add(time.Duration(i)*time.Second)), max); err != nil || len(revoked) != 0 {
				t.Fatalf("CreateToken t%d = %v, %v; want nothing revoked", i, revoked, err)
			}
		}
		if _, err := ts.CreateToken(ctx, tokenRec("other", "u2", now), max); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		for i := 3; i < 6; i++ {
			revoked, err := ts.CreateToken(ctx, tokenRec(fmt.Sprint("t", i), "u1", now.Add(time.Duration(i)*time.Second)), max)
			if err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
			if want := []string{fmt.Sprint("t", i-max)}; !slices.Equal(revoked, want) {
				t.Fatalf("CreateToken t%d revoked %q, want %q", i, revoked, want)
			}
		}
		for i := range 6 {
			_, err := ts.GetToken(ctx, fmt.Sprint("t", i))
			if live := i >= 3; live != (err == nil) {
				t.Errorf("t%d: GetToken err = %v, want live = %v", i, err, live)
			}
		}
		if _, err := ts.GetToken(ctx, "other"); err != nil {
			t.Errorf("another user's token: %v", err)
		}
		// Several beyond the cap at once: a lower cap revokes the oldest two.
		revoked, err := ts.CreateToken(ctx, tokenRec("t6", "u1", now.Add(6*time.Second)), 2)
		if err != nil || !slices.Equal(revoked, []string{"t3", "t4"}) {
			t.Fatalf("CreateToken with cap 2 = %q, %v; want [t3 t4]", revoked, err)
		}
	})

	t.Run("RevokeUserTokens", func(t *testing.T) {
		ts := newStores(t).Tokens
		for i, uid := range []string{"u1", "u1", "u2", "u1"} {
			if _, err := ts.CreateToken(ctx, tokenRec(fmt.Sprint("h", i), uid, now.Add(time.Duration(i)*time.Second)), 0); err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
		}
		if _, err := ts.RevokeToken(ctx, "h1"); err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
		got, err := ts.RevokeUserTokens(ctx, "u1")
		if err != nil {
			t.Fatalf("RevokeUserTokens: %v", err)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"h0", "h3"}) {
			t.Fatalf("RevokeUserTokens = %q, want [h0 h3]", got)
		}
		for _, h := range []string{"h0", "h1", "h3"} {
			_, err := ts.GetToken(ctx, h)
			wantErr(t, "GetToken after RevokeUserTokens", err, auth.ErrNotFound)
		}
		if _, err := ts.GetToken(ctx, "h2"); err != nil {
			t.Errorf("another user's token: %v", err)
		}
		if got, err := ts.RevokeUserTokens(ctx, "u1"); err != nil || len(got) != 0 {
			t.Fatalf("RevokeUserTokens again = %q, %v; want none", got, err)
		}
		if got, err := ts.RevokeUserTokens(ctx, "nobody"); err != nil || len(got) != 0 {
			t.Fatalf("RevokeUserTokens of a user without tokens = %q, %v", got, err)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		ts := newStores(t).Tokens
		start := time.Now()
		short := tokenRec("short", "u1", start) // the oldest
		short.ExpiresAt = start.Add(150 * time.Millisecond)
		if _, err := ts.CreateToken(ctx, short, 2); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		if _, err := ts.GetToken(ctx, "short"); err != nil {
			t.Fatalf("GetToken before expiry: %v", err)
		}
		waitFor(t, "the token to expire", func() bool {
			_, err := ts.GetToken(ctx, "short")
			return errors.Is(err, auth.ErrNotFound)
		})
		// An expired token does not count towards the cap.
		for i := range 2 {
			revoked, err := ts.CreateToken(ctx, tokenRec(fmt.Sprint("h", i), "u1", start.Add(time.Duration(i)*time.Second)), 2)
			if err != nil || len(revoked) != 0 {
				t.Fatalf("CreateToken h%d = %q, %v; want nothing revoked", i, revoked, err)
			}
		}
		wantErr(t, "TouchToken of an expired token", ts.TouchToken(ctx, "short", start, start), auth.ErrNotFound)
		_, err := ts.RevokeToken(ctx, "short")
		wantErr(t, "RevokeToken of an expired token", err, auth.ErrNotFound)
		got, err := ts.RevokeUserTokens(ctx, "u1")
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"h0", "h1"}) {
			t.Fatalf("RevokeUserTokens = %q, %v; want [h0 h1]", got, err)
		}
	})
}

func testThrottle(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	ctx := context.Background()

	t.Run("Counts", func(t *testing.T) {
		th := newStores(t).Throttle
		if n, left, err := th.Count(ctx, "k"); err != nil || n != 0 || left != 0 {
			t.Fatalf("Count of an unknown key = %d, %v, %v; want 0, 0", n, left, err)
		}
		const window = time.Hour
		var prevLeft time.Duration = window
		for want := int64(1); want <= 3; want++ {
			n, left, err := th.Hit(ctx, "k", window)
			if err != nil || n != want {
				t.Fatalf("Hit = %d, %v; want %d", n, err, want)
			}
			// A fixed window: later hits do not extend it.
			if left <= 0 || left > prevLeft {
				t.Fatalf("Hit %d: left = %v, want in (0, %v]", want, left, prevLeft)
			}
			prevLeft = left
		}
		n, left, err := th.Count(ctx, "k")
		if err != nil || n != 3 || left <= window-time.Minute || left > window {
			t.Fatalf("Count = %d, %v, %v; want 3 and about %v", n, left, err, window)
		}
		if n, _, _ := th.Count(ctx, "other"); n != 0 {
			t.Fatalf("Count of another key = %d, want 0", n)
		}
		if n, _, _ := th.Hit(ctx, "other", window); n != 1 {
			t.Fatalf("Hit of another key = %d, want 1", n)
		}
		if err := th.Reset(ctx, "k"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		if n, left, err := th.Count(ctx, "k"); err != nil || n != 0 || left != 0 {
			t.Fatalf("Count after Reset = %d, %v, %v; want 0, 0", n, left, err)
		}
		if n, _, _ := th.Count(ctx, "other"); n != 1 {
			t.Fatalf("Reset changed another key: count %d, want 1", n)
		}
		if err := th.Reset(ctx, "never"); err != nil {
			t.Fatalf("Reset of an unknown key: %v", err)
		}
	})

	t.Run("WindowEnds", func(t *testing.T) {
		th := newStores(t).Throttle
		const window = 100 * time.Millisecond
		for range 2 {
			if _, _, err := th.Hit(ctx, "k", window); err != nil {
				t.Fatalf("Hit: %v", err)
			}
		}
		waitFor(t, "the window to end", func() bool {
			n, left, err := th.Count(ctx, "k")
			if err != nil {
				t.Fatalf("Count: %v", err)
			}
			return n == 0 && left == 0
		})
		n, left, err := th.Hit(ctx, "k", time.Hour)
		if err != nil || n != 1 || left <= time.Hour-time.Minute {
			t.Fatalf("Hit after the window = %d, %v, %v; want 1 in a new window of 1h", n, left, err)
		}
	})

	t.Run("Reserve", func(t *testing.T) {
		th := newStores(t).Throttle
		const window = time.Hour
		var prevLeft time.Duration = window
		for want := int64(1); want <= 3; want++ {
			n, left, ok, err := th.Reserve(ctx, "k", 3, window)
			if err != nil || !ok || n != want {
				t.Fatalf("Reserve %d = %d, %v, %v; want %d, ok", want, n, ok, err, want)
			}
			if left <= 0 || left > prevLeft {
				t.Fatalf("Reserve %d: left = %v, want in (0, %v]", want, left, prevLeft)
			}
			prevLeft = left
		}
		// At the limit: refused, nothing counted, the same window.
		for range 2 {
			n, left, ok, err := th.Reserve(ctx, "k", 3, window)
			if err != nil || ok || n != 3 || left <= 0 || left > prevLeft {
				t.Fatalf("Reserve at the limit = %d, %v, %v, %v; want 3, refused, left in (0, %v]", n, left, ok, err, prevLeft)
			}
		}
		if n, _, _ := th.Count(ctx, "k"); n != 3 {
			t.Fatalf("Count after refused reservations = %d, want 3", n)
		}
		// A higher limit lets more through; Hit and Reserve share the count.
		if n, _, ok, err := th.Reserve(ctx, "k", 4, window); err != nil || !ok || n != 4 {
			t.Fatalf("Reserve with limit 4 = %d, %v, %v; want 4, ok", n, ok, err)
		}
		if n, _, _ := th.Hit(ctx, "k", window); n != 5 {
			t.Fatalf("Hit after Reserve = %d, want 5", n)
		}
		// Another key is not affected; a limit below 1 refuses all.
		if n, _, ok, err := th.Reserve(ctx, "other", 1, window); err != nil || !ok || n != 1 {
			t.Fatalf("Reserve of another key = %d, %v, %v; want 1, ok", n, ok, err)
		}
		if n, left, ok, err := th.Reserve(ctx, "none", 0, window); err != nil || ok || n != 0 || left != 0 {
			t.Fatalf("Reserve with limit 0 = %d, %v, %v, %v; want 0, 0, refused", n, left, ok, err)
		}
		if n, left, _ := th.Count(ctx, "none"); n != 0 || left != 0 {
			t.Fatalf("Count after a reservation refused by limit 0 = %d, %v; want 0, 0", n, left)
		}
	})

	t.Run("ReserveConcurrent", func(t *testing.T) {
		th := newStores(t).Throttle
		const goroutines, limit = 50, 10
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got []int64
		for range goroutines {
			wg.Go(func() {
				n, _, ok, err := th.Reserve(ctx, "k", limit, time.Hour)
				if err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				if ok {
					mu.Lock()
					got = append(got, n)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(got)
		want := make([]int64, limit)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d concurrent reservations with limit %d: granted counts %v, want %v", goroutines, limit, got, want)
		}
		if n, _, _ := th.Count(ctx, "k"); n != limit {
			t.Fatalf("Count = %d, want %d", n, limit)
		}
	})

	t.Run("Release", func(t *testing.T) {
		th := newStores(t).Throttle
		var lefts []time.Duration
		for range 3 {
			_, left, ok, err := th.Reserve(ctx, "k", 3, time.Hour)
			if err != nil || !ok {
				t.Fatalf("Reserve = %v, %v", ok, err)
			}
			lefts = append(lefts, left)
		}
		if _, _, ok, _ := th.Reserve(ctx, "k", 3, time.Hour); ok {
			t.Fatalf("Reserve past the limit: ok")
		}
		if err := th.Release(ctx, "k", lefts[1]); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if n, left, err := th.Count(ctx, "k"); err != nil || n != 2 || left <= 0 || left > lefts[2] {
			t.Fatalf("Count after Release = %d, %v, %v; want 2 in the same window", n, left, err)
		}
		// The slot given back can be taken again, once.
		if n, _, ok, err := th.Reserve(ctx, "k", 3, time.Hour); err != nil || !ok || n != 3 {
			t.Fatalf("Reserve after Release = %d, %v, %v; want 3, ok", n, ok, err)
		}
		if _, _, ok, _ := th.Reserve(ctx, "k", 3, time.Hour); ok {
			t.Fatalf("Reserve past the limit after Release: ok")
		}
		for i := range 3 {
			if err := th.Release(ctx, "k", lefts[i]); err != nil {
				t.Fatalf("Release: %v", err)
			}
		}
		// Down to zero: the key is forgotten.
		if n, left, err := th.Count(ctx, "k"); err != nil || n != 0 || left != 0 {
			t.Fatalf("Count after releasing all = %d, %v, %v; want 0, 0", n, left, err)
		}
		if err := th.Release(ctx, "k", time.Hour); err != nil {
			t.Fatalf("Release of a forgotten key: %v", err)
		}
		if err := th.Release(ctx, "never", time.Hour); err != nil {
			t.Fatalf("Release of an unknown key: %v", err)
		}
		for _, k := range []string{"k", "never"} {
			if n, left, _ := th.Count(ctx, k); n != 0 || left != 0 {
				t.Fatalf("Count(%s) after a Release of nothing = %d, %v; want 0, 0", k, n, left)
			}
		}
		// Another key is not affected.
		th.Hit(ctx, "other", time.Hour)
		if err := th.Release(ctx, "k", time.Hour); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if n, _, _ := th.Count(ctx, "other"); n != 1 {
			t.Fatalf("Release changed another key: count %d, want 1", n)
		}
	})

	t.Run("ReleaseLaterWindow", func(t *testing.T) {
		th := newStores(t).Throttle
		_, old, ok, err := th.Reserve(ctx, "k", 5, 100*time.Millisecond)
		if err != nil || !ok {
			t.Fatalf("Reserve = %v, %v", ok, err)
		}
		waitFor(t, "the window to end", func() bool {
			n, _, err := th.Count(ctx, "k")
			if err != nil {
				t.Fatalf("Count: %v", err)
			}
			return n == 0
		})
		if n, _, ok, err := th.Reserve(ctx, "k", 5, time.Hour); err != nil || !ok || n != 1 {
			t.Fatalf("Reserve in a new window = %d, %v, %v; want 1, ok", n, ok, err)
		}
		// The attempt of the ended window is not taken from the new one.
		if err := th.Release(ctx, "k", old); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if n, left, err := th.Count(ctx, "k"); err != nil || n != 1 || left <= time.Hour-time.Minute {
			t.Fatalf("Count after releasing an attempt of an ended window = %d, %v, %v; want 1 in the new window", n, left, err)
		}
	})
}
