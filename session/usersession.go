package session

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/chatd-project/chatd/auth"
)

// The built-in keys of a UserSession. They answer from the session's record
// and cannot be Set.
const (
	KeyID           = "id"
	KeyEnv          = "env"
	KeyChatSettings = "chat_settings"
	KeyUser         = "user"
	KeyChatProfile  = "chat_profile"
	KeyClientType   = "client_type"
)

// IsBuiltin reports whether key is one of the built-in keys.
func IsBuiltin(key string) bool {
	switch key {
	case KeyID, KeyEnv, KeyChatSettings, KeyUser, KeyChatProfile, KeyClientType:
		return true
	}
	return false
}

// UserSession is the session of one chat as its handlers see it: the
// built-in fields of its record and the application's values, which live in
// the Store so that any instance can serve the session. It mirrors the seed's
// user_session. It is safe for concurrent use. The server holds it through a
// Live, which keeps its record current.
//
// While a turn runs (Live.BeginTurn to Live.EndTurn), the application's
// values are read from a copy in the process and Set only changes that copy
// and remembers the change: the runner stores the changes with the next
// frames it appends (Live.TakeChanges), so that a turn's values are
// durable no later than anything the client saw after they were set, and a
// turn costs no round trip per Get or Set. The copy stays valid from one
// turn to the next while no other instance ran the session's turns in
// between (see BeginTurn).
type UserSession struct {
	st   Sessions
	user *auth.PersistedUser // nil in anonymous mode; never changed

	mu  sync.Mutex // guards the fields below, for Live too
	rec Record
	// vals is the copy of the application's values, nil when unknown;
	// valsFence is the runner lease under which it was known to match the
	// store (once changes are stored).
	vals      map[string][]byte
	valsFence int64
	// copies holds, for some keys of vals, the Go value their JSON
	// decodes to (see copies.go); nil whenever vals is.
	copies map[string]valueCopy
	// turn is the number of the turn running now, 0 between turns;
	// turns counts the turns begun. changes are the values the running
	// turn set that are not taken to be stored yet; set all it set.
	turn, turns  int64
	changes, set map[string][]byte
	// turnFence is the fence the running turn runs under; failed is set
	// when changes of the turn may not have been stored (ChangesFailed).
	turnFence int64
	failed    bool
}

// Live is the server's handle on a session it holds: the session's record,
// kept current, and the UserSession that handlers see. Application code
// never needs it. It is safe for concurrent use; it shares the record and
// its lock with its UserSession.
type Live struct {
	us *UserSession
}

// Open returns the Live of rec, stored in st, for user (nil in anonymous
// mode). It keeps a copy of rec.
func Open(st Store, rec Record, user *auth.PersistedUser) *Live {
	return &Live{us: &UserSession{st: st, user: user, rec: cloneRecord(rec)}}
}

// Session is the UserSession of the session, the one handlers see.
func (l *Live) Session() *UserSession { return l.us }

// Record returns a copy of the session's record.
func (l *Live) Record() Record {
	l.us.mu.Lock()
	defer l.us.mu.Unlock()
	return cloneRecord(l.us.rec)
}

// SyncSettings replaces the in-memory copy of the chat settings with a copy
// of values, after the server stored them with Sessions.SetSettings; it
// stores nothing itself.
func (l *Live) SyncSettings(values map[string]any) {
	v := cloneSettings(values)
	l.us.mu.Lock()
	defer l.us.mu.Unlock()
	l.us.rec.Settings = v
}

// SyncSettingsSchema is SyncSettings for a new schema and its values,
// after the server stored them with Sessions.SetSettingsSchema.
func (l *Live) SyncSettingsSchema(schema []byte, values map[string]any) {
	v := cloneSettings(values)
	sc := slices.Clone(schema)
	l.us.mu.Lock()
	defer l.us.mu.Unlock()
	l.us.rec.Settings, l.us.rec.Schema = v, sc
}

// NoValues records that the session has no application values (it was
// just created, and no turn ran yet): its first turn, under the first
// runner lease, reads nothing from the store.
func (l *Live) NoValues() {
	l.us.mu.Lock()
	defer l.us.mu.Unlock()
	if l.us.turns == 0 && l.us.vals == nil {
		l.us.vals, l.us.valsFence = map[string][]byte{}, 0
	}
}

// BeginTurn starts a turn run under the runner lease fence: until EndTurn,
// Get reads the values from the process's copy (read from the store once
// when it is not known) and Set changes only that copy. The copy kept from
// earlier turns is valid when it matched the store under this very lease,
// or under the one just before it: every taking of the lease raises the
// fence, so no other runner wrote the values in between.
func (l *Live) BeginTurn(fence int64) {
	us := l.us
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.vals != nil && us.valsFence != fence && us.valsFence+1 != fence {
		us.vals, us.copies = nil, nil
	}
	us.valsFence = fence
	us.turns++
	us.turn, us.turnFence, us.failed = us.turns, fence, false
	us.changes, us.set = nil, nil
}

// TakeChanges returns the values the running turn set since the last call
// and forgets them: the caller stores them with the frames it appends, and
// calls ChangesFailed if that fails.
func (l *Live) TakeChanges() map[string][]byte {
	us := l.us
	us.mu.Lock()
	defer us.mu.Unlock()
	c := us.changes
	us.changes = nil
	return c
}

// RestoreChanges gives back values taken with TakeChanges whose store
// failed in a way that may pass, to be stored with the turn's next write:
// each one the turn has not set again since.
func (l *Live) RestoreChanges(values map[string][]byte) {
	if len(values) == 0 {
		return
	}
	us := l.us
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.turn == 0 {
		return
	}
	if us.changes == nil {
		us.changes = make(map[string][]byte, len(values))
	}
	for k, v := range values {
		if _, newer := us.changes[k]; !newer {
			us.changes[k] = v
		}
	}
}

// ChangesFailed records that values taken with TakeChanges will not be
// stored (the lease is lost, the session gone): the copy is dropped, and
// the store is read again when a value is next needed, also after the
// turn.
func (l *Live) ChangesFailed() {
	us := l.us
	us.mu.Lock()
	defer us.mu.Unlock()
	us.vals, us.copies, us.failed = nil, nil, true
}

// EndTurn ends the running turn and returns the values it set that are not
// stored yet (see TakeChanges); a Set after it stores its value at once.
func (l *Live) EndTurn() map[string][]byte {
	us := l.us
	us.mu.Lock()
	defer us.mu.Unlock()
	c := us.changes
	us.changes, us.set, us.turn, us.turnFence = nil, nil, 0, 0
	if us.failed {
		// A Get after the failure put the turn's values back into the
		// copy: the store may not have them.
		us.vals, us.copies = nil, nil
	}
	return c
}

// ID is the session's id.
func (s *UserSession) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ID
}

// ThreadID is the id of the session's thread.
func (s *UserSession) ThreadID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ThreadID
}

// Env returns a copy of the values the client gave for the application's
// declared keys.
func (s *UserSession) Env() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.rec.Env)
}

// ChatSettings returns a copy of the current chat settings values.
func (s *UserSession) ChatSettings() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneSettings(s.rec.Settings)
}

// User is the user of the session, nil in anonymous mode.
func (s *UserSession) User() *auth.PersistedUser { return s.user }

// ChatProfile is the session's chat profile ("" when the application has
// none).
func (s *UserSession) ChatProfile() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ChatProfile
}

// ClientType is the client's type: webapp, mobile, copilot or api.
func (s *UserSession) ClientType() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.ClientType
}

// builtin returns the value of a built-in key, and false when it is not
// built-in or is unset (no user, no chat profile).
func (s *UserSession) builtin(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch key {
	case KeyID:
		return s.rec.ID, true
	case KeyEnv:
		return maps.Clone(s.rec.Env), true
	case KeyChatSettings:
		return cloneSettings(s.rec.Settings), true
	case KeyUser:
		return s.user, s.user != nil
	case KeyChatProfile:
		return s.rec.ChatProfile, s.rec.ChatProfile != ""
	case KeyClientType:
		return s.rec.ClientType, true
	}
	return nil, false
}

// Get returns the value of key, or def when it is not set.
//
// The built-in keys answer from the record: "id" (string), "env"
// (map[string]string), "chat_settings" (map[string]any), "user"
// (*auth.PersistedUser; def in anonymous mode), "chat_profile" (string; def
// when there is none), "client_type" (string). Any other key is an
// application value, decoded from JSON as encoding/json does into an any:
// numbers are float64, objects map[string]any, arrays []any. Use Get[T] or
// an Accessor for typed values.
func (s *UserSession) Get(ctx context.Context, key string, def any) (any, error) {
	return Get(ctx, s, key, def)
}

// Set stores value for key, JSON-encoded. Setting a built-in key fails with
// an error that wraps ErrReadOnly; a value JSON cannot encode fails, and
// nothing is stored.
func (s *UserSession) Set(ctx context.Context, key string, value any) error {
	if IsBuiltin(key) {
		return fmt.Errorf("session: set %q: %w", key, ErrReadOnly)
	}
	if dropped(ctx) {
		return fmt.Errorf("session: set %q: its run was dropped: %w", key, ErrLeaseLost)
	}
	b, valid, err := s.encode(key, value)
	if err != nil {
		return fmt.Errorf("session: set %q: %w", key, err)
	}
	s.mu.Lock()
	if fence := FenceOf(ctx); s.turn != 0 && (fence == 0 || fence == s.turnFence) {
		if s.changes == nil {
			s.changes = make(map[string][]byte)
		}
		if s.set == nil {
			s.set = make(map[string][]byte)
		}
		s.changes[key], s.set[key] = b, b
		delete(s.copies, key)
		if s.vals == nil {
			s.mu.Unlock()
			return nil
		}
		s.vals[key] = b
		s.mu.Unlock()
		s.keep(key, b, reflect.ValueOf(value), valid)
		return nil
	}
	// Outside a turn (a chat end, a goroutine a handler left running) the
	// value is stored at once, under the fence of its context (a stale one
	// is refused), and the copy, which it bypasses, dropped.
	s.vals, s.copies = nil, nil
	id := s.rec.ID
	s.mu.Unlock()
	if err := s.st.SetValue(ctx, id, key, b); err != nil {
		return fmt.Errorf("session: set %q: %w", key, err)
	}
	return nil
}

// value returns the application's value of key (JSON) and whether it is
// set: from the copy during a turn, from the store otherwise.
func (s *UserSession) value(ctx context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	turn, id := s.turn, s.rec.ID
	if turn != 0 && s.vals != nil {
		b, ok := s.vals[key]
		s.mu.Unlock()
		return b, ok, nil
	}
	s.mu.Unlock()
	if turn == 0 {
		return s.st.Value(ctx, id, key)
	}
	vals, err := s.st.Values(ctx, id)
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// What the turn set wins over what the store had: it may not be
	// stored yet, or be on its way there now.
	for k, v := range s.set {
		vals[k] = v
	}
	if s.turn == turn && s.vals == nil {
		s.vals = vals
	}
	b, ok := vals[key]
	return b, ok, nil
}

// Get returns the value of key in s as a T, or def when it is not set. An
// application value is decoded from its JSON into a T; a built-in one (see
// UserSession.Get) is returned as is when it is a T, and converted through
// JSON otherwise. A value that does not decode into a T is an error.
func Get[T any](ctx context.Context, s *UserSession, key string, def T) (T, error) {
	var zero T
	if IsBuiltin(key) {
		v, ok := s.builtin(key)
		if !ok {
			return def, nil
		}
		if t, ok := v.(T); ok {
			return t, nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("session: get %q: %w", key, err)
		}
		return decode[T](key, b)
	}
	b, ok, err := s.value(ctx, key)
	if err != nil {
		return zero, fmt.Errorf("session: get %q: %w", key, err)
	}
	if !ok {
		return def, nil
	}
	if c, ok := s.recall(key, b, reflect.TypeFor[T]()); ok {
		return c.Interface().(T), nil
	}
	v, err := decode[T](key, b)
	if err != nil {
		return zero, err
	}
	s.keep(key, b, reflect.ValueOf(&v).Elem(), 0)
	return v, nil
}

// encode returns value's JSON for Set: encoded from scratch, or, when
// value is the slice the session keeps a copy of for key with elements
// appended, only the new elements (see appendedJSON); valid is then the
// number of elements value shares with the copy.
func (s *UserSession) encode(key string, value any) (b []byte, valid int, err error) {
	v := reflect.ValueOf(value)
	if v.Kind() == reflect.Slice {
		s.mu.Lock()
		c, ok := s.copies[key]
		ok = ok && s.vals != nil && sameBytes(s.vals[key], c.b)
		s.mu.Unlock()
		if ok {
			if b, valid, ok, err := appendedJSON(c, v); ok || err != nil {
				return b, valid, err
			}
		}
	}
	b, err = json.Marshal(value)
	return b, 0, err
}

// copyMinBytes is the size of JSON under which Get decodes a value rather
// than keep a copy of it: decoding a small value costs about what copying
// it does.
const copyMinBytes = 128

// recall returns a deep copy of the value of key that the session keeps
// for its JSON b, when it keeps one of type t.
func (s *UserSession) recall(key string, b []byte, t reflect.Type) (reflect.Value, bool) {
	s.mu.Lock()
	c, ok := s.copies[key]
	s.mu.Unlock()
	if !ok || c.v.Type() != t || !sameBytes(c.b, b) {
		return reflect.Value{}, false
	}
	// c.v is never changed once kept: it is copied outside the lock.
	if c.v.Kind() == reflect.Slice && !c.v.IsNil() && shallow(t.Elem()) {
		// With room to grow: a handler that gets a history appends to it.
		n := c.v.Len()
		v := reflect.MakeSlice(t, n, n+max(4, n/8))
		reflect.Copy(v, c.v)
		return v, true
	}
	return copyValue(c.v, false)
}

// keep keeps a deep copy of v, the value of key whose JSON is b, for Get
// to return copies of instead of decoding b: when v's type round-trips
// through JSON and the session's copy of the values still holds b for key.
// v's first valid elements, when it is a slice, are known to hold only
// valid UTF-8 (see encode).
func (s *UserSession) keep(key string, b []byte, v reflect.Value, valid int) {
	if len(b) < copyMinBytes || !v.IsValid() || !roundTrips(v.Type()) {
		return
	}
	var c reflect.Value
	ok := false
	if valid > 0 {
		c, ok = copyValue(v, false)
		ok = ok && validStrings(v.Slice(valid, v.Len()))
	} else {
		c, ok = copyValue(v, true)
	}
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil || !sameBytes(s.vals[key], b) {
		return
	}
	if s.copies == nil {
		s.copies = make(map[string]valueCopy)
	}
	s.copies[key] = valueCopy{b: b, v: c}
}

// decode decodes a value as encoding/json does, with the v1 emulation of
// the json/v2 decoder: the same results, at less than half the time and a
// few allocations where encoding/json makes one per element (a handler
// that keeps a growing history in its session reads it on every message).
func decode[T any](key string, b []byte) (T, error) {
	var v T
	if err := jsonv1.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("session: get %q: %w", key, err)
	}
	return v, nil
}

// Accessor reads and writes one session key as a T: the seed's
// create_accessor. Its zero value is not usable; see NewAccessor. An Accessor
// holds no session and may be shared by all sessions and goroutines.
type Accessor[T any] struct {
	key   string
	def   T
	apply func(T) T
}

// NewAccessor returns the Accessor of key, reading def when the key is not
// set. apply, when not nil, is applied to every value read, def included
// (NewAccessor("user_level", "beginner", strings.ToLower)).
func NewAccessor[T any](key string, def T, apply func(T) T) Accessor[T] {
	return Accessor[T]{key: key, def: def, apply: apply}
}

// Key is the session key of the accessor.
func (a Accessor[T]) Key() string { return a.key }

// Get returns the value of the accessor's key in s, or its default, passed
// through its apply function.
func (a Accessor[T]) Get(ctx context.Context, s *UserSession) (T, error) {
	v, err := Get(ctx, s, a.key, a.def)
	if err != nil {
		return v, err
	}
	if a.apply != nil {
		v = a.apply(v)
	}
	return v, nil
}

// Set stores v for the accessor's key in s (see UserSession.Set).
func (a Accessor[T]) Set(ctx context.Context, s *UserSession, v T) error {
	return s.Set(ctx, a.key, v)
}
