// Package authtest is the conformance suite of the auth stores: every
// implementation of auth.UserStore, auth.TokenStore, auth.ThrottleStore and
// auth.FlowStore runs it from its tests.
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
// since some subtests wait (briefly) for tokens, throttle windows and flows
// to expire.
func Run(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	t.Run("Users", func(t *testing.T) { testUsers(t, newStores) })
	t.Run("Links", func(t *testing.T) { testLinks(t, newStores) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, newStores) })
	t.Run("Throttle", func(t *testing.T) { testThrottle(t, newStores) })
	t.Run("Flows", func(t *testing.T) { testFlows(t, newStores) })
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

func mustCreateLinked(t *testing.T, us auth.UserStore, u auth.User, l auth.Link) *auth.PersistedUser {
	t.Helper()
	p, err := us.CreateLinkedUser(context.Background(), u, l)
	if err != nil {
		t.Fatalf("CreateLinkedUser(%q, %v): %v", u.Identifier, l, err)
	}
	return p
}

func mustAddLink(t *testing.T, us auth.UserStore, userID string, l auth.Link) {
	t.Helper()
	if err := us.AddLink(context.Background(), userID, l); err != nil {
		t.Fatalf("AddLink(%v): %v", l, err)
	}
}

// assertLinked fails t unless l links the user with id want ("": no user).
func assertLinked(t *testing.T, us auth.UserStore, l auth.Link, want string) {
	t.Helper()
	got, err := us.GetUserByLink(context.Background(), l)
	switch {
	case want == "" && !errors.Is(err, auth.ErrNotFound):
		t.Fatalf("GetUserByLink(%v) = %+v, %v; want ErrNotFound", l, got, err)
	case want != "" && (err != nil || got.ID != want):
		t.Fatalf("GetUserByLink(%v) = %+v, %v; want user %s", l, got, err, want)
	}
}

// assertLinks fails t unless the user's links are want, in that order.
func assertLinks(t *testing.T, us auth.UserStore, userID string, want ...auth.Link) {
	t.Helper()
	got, err := us.Links(context.Background(), userID)
	if err != nil {
		t.Fatalf("Links: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Links = %v, want %v", got, want)
	}
}

func testLinks(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	ctx := context.Background()
	google := auth.Link{Provider: "google", Subject: "1234567890"}
	github := auth.Link{Provider: "github", Subject: "42"}

	t.Run("CreateLinked", func(t *testing.T) {
		us := newStores(t).Users
		before := time.Now().Add(-time.Second)
		p := mustCreateLinked(t, us, auth.User{Identifier: "ada@example.com", DisplayName: "Ada",
			Metadata: map[string]any{"n": 1}}, google)
		if _, err := uuid.Parse(p.ID); err != nil {
			t.Errorf("ID %q is not a UUID: %v", p.ID, err)
		}
		if p.Anonymous || p.CreatedAt.Location() != time.UTC || p.CreatedAt.Before(before) ||
			!reflect.DeepEqual(p.Metadata, map[string]any{"n": float64(1)}) {
			t.Errorf("CreateLinkedUser = %+v, want a user created now, not anonymous, with its metadata", p)
		}
		got, hash, err := us.GetUserByIdentifier(ctx, "ada@example.com")
		if err != nil {
			t.Fatalf("GetUserByIdentifier: %v", err)
		}
		assertUser(t, got, p)
		if hash != "" {
			t.Errorf("password hash of a linked user = %q, want none", hash)
		}
		got, err = us.GetUserByLink(ctx, google)
		if err != nil {
			t.Fatalf("GetUserByLink: %v", err)
		}
		assertUser(t, got, p)
		assertLinks(t, us, p.ID, google)
		if list, err := us.ListUsers(ctx); err != nil || len(list) != 1 || list[0].ID != p.ID {
			t.Fatalf("ListUsers = %v, %v; want the linked user", list, err)
		}
	})

	t.Run("CreateLinkedExists", func(t *testing.T) {
		tests := []struct {
			name  string
			ident string
			link  auth.Link
		}{
			{"identifier taken", "ada", github},
			{"link taken", "bob", google},
			{"both taken", "ada", google},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				us := newStores(t).Users
				first := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, google)
				_, err := us.CreateLinkedUser(ctx, auth.User{Identifier: tt.ident}, tt.link)
				wantErr(t, "CreateLinkedUser", err, auth.ErrExists)
				// Nothing stored: neither the user, nor its link.
				if list, _ := us.ListUsers(ctx); len(list) != 1 {
					t.Fatalf("ListUsers after ErrExists: %d users, want 1", len(list))
				}
				if tt.ident != "ada" {
					_, _, err := us.GetUserByIdentifier(ctx, tt.ident)
					wantErr(t, "GetUserByIdentifier after ErrExists", err, auth.ErrNotFound)
				}
				want := ""
				if tt.link == google {
					want = first.ID
				}
				assertLinked(t, us, tt.link, want)
				assertLinks(t, us, first.ID, google)
			})
		}
		t.Run("password user", func(t *testing.T) {
			us := newStores(t).Users
			p := mustCreate(t, us, auth.User{Identifier: "ada"}, "h", false)
			_, err := us.CreateLinkedUser(ctx, auth.User{Identifier: "ada"}, google)
			wantErr(t, "CreateLinkedUser with the identifier of a password user", err, auth.ErrExists)
			assertLinked(t, us, google, "")
			assertLinks(t, us, p.ID)
			_, err = us.CreateUser(ctx, auth.User{Identifier: "bob"}, "h", false)
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			mustCreateLinked(t, us, auth.User{Identifier: "carol"}, google)
			_, err = us.CreateUser(ctx, auth.User{Identifier: "carol"}, "h", false)
			wantErr(t, "CreateUser with the identifier of a linked user", err, auth.ErrExists)
		})
	})

	t.Run("CreateLinkedConcurrent", func(t *testing.T) {
		const goroutines = 8
		tests := []struct {
			name string
			user func(i int) (auth.User, auth.Link)
		}{
			{"same link", func(i int) (auth.User, auth.Link) {
				return auth.User{Identifier: fmt.Sprint("user", i)}, google
			}},
			{"same identifier", func(i int) (auth.User, auth.Link) {
				return auth.User{Identifier: "ada"}, auth.Link{Provider: "google", Subject: fmt.Sprint(i)}
			}},
			{"same both", func(i int) (auth.User, auth.Link) {
				return auth.User{Identifier: "ada"}, google
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				us := newStores(t).Users
				var wg sync.WaitGroup
				created := make(chan *auth.PersistedUser, goroutines)
				for i := range goroutines {
					wg.Go(func() {
						u, l := tt.user(i)
						p, err := us.CreateLinkedUser(ctx, u, l)
						switch {
						case err == nil:
							created <- p
						case !errors.Is(err, auth.ErrExists):
							t.Errorf("CreateLinkedUser: %v, want nil or ErrExists", err)
						}
					})
				}
				wg.Wait()
				close(created)
				var won []*auth.PersistedUser
				for p := range created {
					won = append(won, p)
				}
				if len(won) != 1 {
					t.Fatalf("%d concurrent CreateLinkedUser: %d created, want 1", goroutines, len(won))
				}
				if list, err := us.ListUsers(ctx); err != nil || len(list) != 1 || list[0].ID != won[0].ID {
					t.Fatalf("ListUsers = %v, %v; want the one created", list, err)
				}
				links, err := us.Links(ctx, won[0].ID)
				if err != nil || len(links) != 1 {
					t.Fatalf("Links of the one created = %v, %v; want one", links, err)
				}
				assertLinked(t, us, links[0], won[0].ID)
				for i := range goroutines {
					if _, l := tt.user(i); l != links[0] {
						assertLinked(t, us, l, "")
					}
				}
			})
		}
	})

	t.Run("GetByLink", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, google)
		// The pair is matched whole, whatever the strings hold.
		odd := []auth.Link{
			{Provider: "a", Subject: "b:c"},
			{Provider: "a:b", Subject: "c"},
			{Provider: "1", Subject: "2:3"},
			{Provider: "1:2", Subject: "3"},
			{Provider: "sp ace", Subject: "line\nbreak \x00 é {u:x}"},
		}
		ids := map[auth.Link]string{}
		for i, l := range odd {
			ids[l] = mustCreateLinked(t, us, auth.User{Identifier: fmt.Sprint("odd", i)}, l).ID
		}
		for l, id := range ids {
			assertLinked(t, us, l, id)
			assertLinks(t, us, id, l)
		}
		for _, l := range []auth.Link{
			{Provider: "google", Subject: "123456789"},
			{Provider: "google", Subject: "1234567890 "},
			{Provider: "github", Subject: google.Subject},
			{Provider: "a", Subject: "b"},
			{Provider: "a:b:c", Subject: ""},
		} {
			assertLinked(t, us, l, "")
		}
		assertLinked(t, us, google, p.ID)
	})

	t.Run("AddLink", func(t *testing.T) {
		us := newStores(t).Users
		ada := mustCreate(t, us, auth.User{Identifier: "ada"}, "h", false)
		bob := mustCreateLinked(t, us, auth.User{Identifier: "bob"}, github)
		mustAddLink(t, us, ada.ID, google)
		assertLinked(t, us, google, ada.ID)
		mustAddLink(t, us, ada.ID, google) // again: nothing changes
		assertLinks(t, us, ada.ID, google)
		wantErr(t, "AddLink of another user's link", us.AddLink(ctx, bob.ID, google), auth.ErrExists)
		wantErr(t, "AddLink of another user's link", us.AddLink(ctx, ada.ID, github), auth.ErrExists)
		assertLinked(t, us, google, ada.ID)
		assertLinked(t, us, github, bob.ID)
		assertLinks(t, us, bob.ID, github)
		// A user may have several links, of one provider too.
		other := auth.Link{Provider: "google", Subject: "other"}
		mustAddLink(t, us, bob.ID, other)
		assertLinks(t, us, bob.ID, github, other)
		if _, hash, err := us.GetUserByIdentifier(ctx, "ada"); err != nil || hash != "h" {
			t.Fatalf("AddLink changed the password hash: %q, %v", hash, err)
		}
	})

	t.Run("RemoveLink", func(t *testing.T) {
		us := newStores(t).Users
		ada := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, google)
		mustAddLink(t, us, ada.ID, github)
		bob := mustCreate(t, us, auth.User{Identifier: "bob"}, "", false)
		wantErr(t, "RemoveLink of another user's link", us.RemoveLink(ctx, bob.ID, google), auth.ErrNotFound)
		assertLinked(t, us, google, ada.ID)
		if err := us.RemoveLink(ctx, ada.ID, google); err != nil {
			t.Fatalf("RemoveLink: %v", err)
		}
		assertLinked(t, us, google, "")
		assertLinks(t, us, ada.ID, github)
		wantErr(t, "RemoveLink twice", us.RemoveLink(ctx, ada.ID, google), auth.ErrNotFound)
		// Free again: another user may take it.
		mustAddLink(t, us, bob.ID, google)
		assertLinked(t, us, google, bob.ID)
		if got, err := us.GetUser(ctx, ada.ID); err != nil || got.Identifier != "ada" {
			t.Fatalf("the user after RemoveLink = %+v, %v", got, err)
		}
	})

	t.Run("LinksSorted", func(t *testing.T) {
		us := newStores(t).Users
		want := []auth.Link{
			{Provider: "a", Subject: "z"},
			{Provider: "github", Subject: "10"},
			{Provider: "github", Subject: "2"},
			{Provider: "google", Subject: "a"},
			{Provider: "google", Subject: "b"},
		}
		p := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, want[3])
		for _, i := range []int{4, 2, 0, 1} {
			mustAddLink(t, us, p.ID, want[i])
		}
		mustCreateLinked(t, us, auth.User{Identifier: "bob"}, github)
		assertLinks(t, us, p.ID, want...)
		none := mustCreate(t, us, auth.User{Identifier: "carol"}, "h", false)
		assertLinks(t, us, none.ID)
	})

	t.Run("DeleteRemovesLinks", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, google)
		mustAddLink(t, us, p.ID, github)
		other := mustCreateLinked(t, us, auth.User{Identifier: "bob"}, auth.Link{Provider: "google", Subject: "bob"})
		if err := us.DeleteUser(ctx, p.ID); err != nil {
			t.Fatalf("DeleteUser: %v", err)
		}
		assertLinked(t, us, google, "")
		assertLinked(t, us, github, "")
		_, err := us.Links(ctx, p.ID)
		wantErr(t, "Links of a deleted user", err, auth.ErrNotFound)
		assertLinked(t, us, auth.Link{Provider: "google", Subject: "bob"}, other.ID)
		// The links can be used again, by a new user or another one.
		again := mustCreateLinked(t, us, auth.User{Identifier: "ada"}, google)
		if again.ID == p.ID {
			t.Errorf("recreated user has the old id")
		}
		assertLinked(t, us, google, again.ID)
		mustAddLink(t, us, other.ID, github)
		assertLinked(t, us, github, other.ID)
	})

	t.Run("NotFound", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreateLinked(t, us, auth.User{Identifier: "someone"}, google)
		id := uuid.NewString()
		calls := []struct {
			name string
			call func() error
		}{
			{"GetUserByLink", func() error { _, err := us.GetUserByLink(ctx, github); return err }},
			{"AddLink", func() error { return us.AddLink(ctx, id, github) }},
			{"AddLink of a taken link", func() error { return us.AddLink(ctx, id, google) }},
			{"RemoveLink", func() error { return us.RemoveLink(ctx, id, google) }},
			{"RemoveLink of a user without it", func() error { return us.RemoveLink(ctx, p.ID, github) }},
			{"Links", func() error { _, err := us.Links(ctx, id); return err }},
		}
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) { wantErr(t, c.name, c.call(), auth.ErrNotFound) })
		}
		assertLinked(t, us, github, "")
		assertLinked(t, us, google, p.ID)
	})

	t.Run("Invalid", func(t *testing.T) {
		us := newStores(t).Users
		p := mustCreate(t, us, auth.User{Identifier: "ada"}, "", false)
		for _, l := range []auth.Link{{}, {Provider: "google"}, {Subject: "1"}} {
			_, err := us.CreateLinkedUser(ctx, auth.User{Identifier: "bob"}, l)
			wantErr(t, fmt.Sprintf("CreateLinkedUser(%v)", l), err, auth.ErrInvalid)
			wantErr(t, fmt.Sprintf("AddLink(%v)", l), us.AddLink(ctx, p.ID, l), auth.ErrInvalid)
		}
		if list, _ := us.ListUsers(ctx); len(list) != 1 {
			t.Fatalf("ListUsers after invalid links: %d users, want 1", len(list))
		}
		assertLinks(t, us, p.ID)
	})
}

func mustPutFlow(t *testing.T, fs auth.FlowStore, key, value string, ttl time.Duration) {
	t.Helper()
	if err := fs.PutFlow(context.Background(), key, []byte(value), ttl); err != nil {
		t.Fatalf("PutFlow(%q): %v", key, err)
	}
}

// wantFlow fails t unless TakeFlow(key) returns want.
func wantFlow(t *testing.T, fs auth.FlowStore, key, want string) {
	t.Helper()
	got, err := fs.TakeFlow(context.Background(), key)
	if err != nil || string(got) != want {
		t.Fatalf("TakeFlow(%q) = %q, %v; want %q", key, got, err, want)
	}
}

// waitFlowExpiry puts probes flows with ttl under key prefix, then takes
// them one by one, a while apart, until a take finds nothing: each probe is
// taken once, so the first one missing has expired. It fails t when every
// probe was still there, or after a few seconds.
func waitFlowExpiry(t *testing.T, fs auth.FlowStore, prefix string, ttl time.Duration) {
	t.Helper()
	const probes = 256
	for i := range probes {
		mustPutFlow(t, fs, fmt.Sprint(prefix, i), "probe", ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := range probes {
		got, err := fs.TakeFlow(context.Background(), fmt.Sprint(prefix, i))
		if errors.Is(err, auth.ErrNotFound) {
			return
		}
		if err != nil || string(got) != "probe" {
			t.Fatalf("TakeFlow of a probe = %q, %v", got, err)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(ttl / 8)
	}
	t.Fatalf("timed out waiting for flows with a TTL of %v to expire", ttl)
}

func testFlows(t *testing.T, newStores func(t *testing.T) auth.Stores) {
	ctx := context.Background()

	t.Run("PutTake", func(t *testing.T) {
		fs := newStores(t).Flows
		value := []byte("state\x00{\"nonce\":\"n\"}\xff")
		if err := fs.PutFlow(ctx, "k", value, time.Hour); err != nil {
			t.Fatalf("PutFlow: %v", err)
		}
		value[0] = 'X' // the store keeps its own copy
		mustPutFlow(t, fs, "other", "o", time.Hour)
		wantFlow(t, fs, "k", "state\x00{\"nonce\":\"n\"}\xff")
		_, err := fs.TakeFlow(ctx, "k")
		wantErr(t, "TakeFlow twice", err, auth.ErrNotFound)
		_, err = fs.TakeFlow(ctx, "never")
		wantErr(t, "TakeFlow of an unknown key", err, auth.ErrNotFound)
		wantFlow(t, fs, "other", "o")
	})

	t.Run("Overwrite", func(t *testing.T) {
		fs := newStores(t).Flows
		mustPutFlow(t, fs, "k", "first", time.Hour)
		mustPutFlow(t, fs, "k", "second", time.Hour)
		wantFlow(t, fs, "k", "second")
		_, err := fs.TakeFlow(ctx, "k")
		wantErr(t, "TakeFlow after an overwrite was taken", err, auth.ErrNotFound)
	})

	t.Run("Empty", func(t *testing.T) {
		fs := newStores(t).Flows
		mustPutFlow(t, fs, "k", "", time.Hour)
		wantFlow(t, fs, "k", "")
		_, err := fs.TakeFlow(ctx, "k")
		wantErr(t, "TakeFlow twice", err, auth.ErrNotFound)
	})

	t.Run("ConcurrentTake", func(t *testing.T) {
		fs := newStores(t).Flows
		mustPutFlow(t, fs, "k", "v", time.Hour)
		const goroutines = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got [][]byte
		for range goroutines {
			wg.Go(func() {
				b, err := fs.TakeFlow(ctx, "k")
				switch {
				case err == nil:
					mu.Lock()
					got = append(got, b)
					mu.Unlock()
				case !errors.Is(err, auth.ErrNotFound):
					t.Errorf("TakeFlow: %v", err)
				}
			})
		}
		wg.Wait()
		if len(got) != 1 || string(got[0]) != "v" {
			t.Fatalf("%d concurrent TakeFlow got %q, want one \"v\"", goroutines, got)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		fs := newStores(t).Flows
		mustPutFlow(t, fs, "long", "kept", time.Hour)
		waitFlowExpiry(t, fs, "short", 100*time.Millisecond)
		wantFlow(t, fs, "long", "kept")
		// An expired key takes a new value like any other.
		mustPutFlow(t, fs, "short0", "again", time.Hour)
		wantFlow(t, fs, "short0", "again")
	})
}
