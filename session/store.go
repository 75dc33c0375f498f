package session

import (
	"context"
	"errors"
	"time"
)

// Errors that callers branch on.
var (
	// ErrNotFound: no such session (or it expired), thread, ask or file.
	ErrNotFound = errors.New("session: not found")
	// ErrReadOnly: Set of a built-in key (id, env, chat_settings, user,
	// chat_profile, client_type).
	ErrReadOnly = errors.New("session: built-in key is read-only")
	// ErrTooManySessions: the user has the maximum of sessions with an open
	// socket already.
	ErrTooManySessions = errors.New("session: too many live sessions")
	// ErrEnded: the session has ended; it cannot be attached again.
	ErrEnded = errors.New("session: ended")
	// ErrBadCursor: a ThreadQuery.Cursor that is not a ThreadPage.Next, or
	// a StepQuery.Cursor that is not a StepPage.Next.
	ErrBadCursor = errors.New("session: malformed cursor")
	// ErrThreadFull: a user message to a thread that holds
	// UserMessage.MaxSteps steps already; nothing was stored.
	ErrThreadFull = errors.New("session: thread is full")
)

// Record is what the server keeps about one session, besides the
// application's values, its outbound log and its thread's steps.
type Record struct {
	ID          string
	UserID      string
	ThreadID    string
	ChatProfile string // "" when the application has no profiles
	ClientType  string // webapp, mobile, copilot or api
	// Epoch names the life of the session's log; it changes when stored
	// frames were lost, so that clients replaying from it reset.
	Epoch string
	// Env holds the values of the keys the application declared. Never
	// logged, never persisted to a thread.
	Env map[string]string
	// Settings are the current chat settings values.
	Settings map[string]any
	// Schema is the session's own settings schema (a JSON list of widgets)
	// when the application pushed one; nil: its chat profile's.
	Schema    []byte
	CreatedAt time.Time
}

// Step is one stored entry of a thread: a user, assistant or system message.
type Step struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"` // user_message, assistant_message, system_message
	Author    string         `json:"author"`
	Content   string         `json:"content"`
	CreatedAt time.Time      `json:"created_at"`
	ParentID  string         `json:"parent_id,omitempty"`
	Command   string         `json:"command,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

// Frame is an outbound sequenced frame to append to a session's log.
type Frame struct {
	// ID makes the append idempotent: appending a frame whose ID the log
	// already holds returns the seq it got then and appends nothing.
	ID string
	// Payload is the frame's JSON object without its "seq" field; the seq
	// is spliced in when the frame is sent (see server's codec).
	Payload []byte
	// Step, when not nil, is written to the session's thread in the same
	// operation, created or replaced by its ID (idempotent).
	Step *Step
}

// Logged is a frame read back from a session's log.
type Logged struct {
	Seq     int64
	Payload []byte
}

// UserMessage is an inbound user message to store, with its echo.
type UserMessage struct {
	// ClientID is the client's idempotency key within the session ("" for
	// none). A repeated ClientID stores nothing and returns the first echo.
	ClientID string
	// Echo is the sequenced echo frame; Echo.Step is the user_message step.
	Echo Frame
	// ThreadName is the name the thread takes if this message is the one
	// that persists it (its first user message).
	ThreadName string
	// Then are frames appended right after the echo in the same operation
	// (a task_start, say), only when the message is not a duplicate. They
	// carry no step. With a Turn, they are appended only when this call
	// took the runner lease: the turn starts at once.
	Then []Frame
	// Turn, when its ID is set, is queued in the session's inbox with the
	// message, as Turns.Enqueue does for Instance, and refused with ErrBusy
	// (nothing stored) when QueueMax turns wait already (0: no limit).
	Turn     Turn
	Instance string
	QueueMax int
	// MaxSteps, when above 0, caps the steps of the thread: a message whose
	// echo would add a step to a thread that holds MaxSteps steps already
	// (of every type) is refused with ErrThreadFull and nothing is stored.
	// A Duplicate and a retry of a stored message are answered as always.
	MaxSteps int
}

// Thread is a persisted thread: its summary and its steps in the order they
// were stored.
type Thread struct {
	ID     string
	UserID string
	// Name is the name the thread took when it was persisted
	// (UserMessage.ThreadName), or the one RenameThread gave it.
	Name string
	// ChatProfile is the profile of the session that persisted the thread.
	ChatProfile string
	// CreatedAt is when the thread was persisted; UpdatedAt when a step was
	// last stored in it. Both in UTC, to the millisecond, by the store's
	// clock.
	CreatedAt time.Time
	UpdatedAt time.Time
	Steps     []Step
	// Metadata is what SetThreadMetadata merged into the thread; never nil.
	Metadata map[string]any
	// Tags are the thread's tags; never nil (no operation sets them yet).
	Tags []string
	// SessionID is the session most recently created on the thread.
	SessionID string
}

// Summary is the thread without its steps, metadata and tags.
func (t Thread) Summary() ThreadSummary {
	return ThreadSummary{
		ID: t.ID, UserID: t.UserID, Name: t.Name, ChatProfile: t.ChatProfile,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
}

// Appended is the result of storing a UserMessage.
type Appended struct {
	Seq int64
	// Payload is the echo's: the UserMessage's own Echo.Payload (the same
	// slice) unless Duplicate.
	Payload []byte
	// Duplicate is true when ClientID had been seen: nothing was stored and
	// Seq and Payload are those of the first echo.
	Duplicate bool
	// ThenSeqs are the seqs of UserMessage.Then, in order (none for a
	// duplicate).
	ThenSeqs []int64
	// Fence is above 0 when the call took the session's runner lease for
	// UserMessage.Instance (the caller starts a runner, whose turn is
	// UserMessage.Turn, started); Runner is the instance holding the lease
	// otherwise ("" for none).
	Fence  int64
	Runner string
}

// Attached is the result of Attach.
type Attached struct {
	// LastSeq is the highest seq assigned in the session when it was
	// attached.
	LastSeq int64
	// Previous is where the session was attached until then (the instance
	// string of the socket taken over), "" when it was detached.
	Previous string
}

// Store is everything the server keeps about sessions, as one value: its
// roles (Sessions, Threads, Asks, Lifecycle, Turns, Streams) and DeleteUserData, which
// spans them all. Implementations: NewMemoryStore and NewRedisStore, both
// checked by sessiontest.Run.
type Store interface {
	Sessions
	Threads
	Asks
	Lifecycle
	Turns
	Streams

	// DeleteUserData deletes everything the store keeps about the user:
	// every thread of theirs (as DeleteThread does), every session of
	// theirs (record, values, log, frame ids, end claim, grace deadline,
	// live mark) with its thread when that is not persisted, and the
	// user's own indexes. It returns the ids of the sessions it deleted
	// that still existed, sorted, so that the caller can close their
	// sockets. A user without data is no error.
	//
	// It belongs to no single role: it deletes the data of all of them
	// (records and logs, threads, asks and files, claims) in one
	// operation.
	DeleteUserData(ctx context.Context, userID string) ([]string, error)
}

// Sessions is the role of a Store that keeps session records, the
// application's values of each session, and each session's sequenced log
// of outbound frames, whose steps it writes to the session's thread.
type Sessions interface {
	// Create stores a new session record; its keys expire after ttl unless
	// touched.
	//
	// ID, UserID and ThreadID must be set; a zero CreatedAt takes the
	// store's clock. A ttl <= 0 means no expiry. Creating an existing
	// session again replaces its record fields and keeps its seq, values
	// and log (so a retried Create is harmless).
	//
	// Create records rec.ID as the thread's latest session
	// (Thread.SessionID) and otherwise keeps the thread as it is: resuming
	// a persisted thread is creating a session on it, whose steps continue
	// the thread's order. The keys of a thread not persisted yet expire no
	// sooner than the new session's. The session is added to its user's
	// sessions, for DeleteUserData.
	Create(ctx context.Context, rec Record, ttl time.Duration) error
	// Get returns a session record, or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// Touch extends the expiry of every key of the session to ttl from now
	// (ttl <= 0: no expiry), and of its thread's keys while the thread is
	// not persisted. ErrNotFound for a missing session.
	Touch(ctx context.Context, id string, ttl time.Duration) error
	// SetSettingsSchema replaces the session's settings schema and values
	// together (ErrNotFound for a missing session).
	SetSettingsSchema(ctx context.Context, id string, schema []byte, values map[string]any) error
	// SetSettings replaces the session's chat settings values (ErrNotFound
	// for a missing session).
	SetSettings(ctx context.Context, id string, values map[string]any) error
	// CreateOnThread is Create on the condition that the record's thread
	// exists and its latest session is prev (compare and create): of two
	// resumes racing to start a session on a thread, one creates it and the
	// other gets false, writes nothing, and takes the winner's session over.
	CreateOnThread(ctx context.Context, rec Record, ttl time.Duration, prev string) (bool, error)

	// Value returns the application's value for key (JSON), and whether it
	// was set. Value, SetValue and Values fail with ErrNotFound when the
	// session is missing or expired.
	Value(ctx context.Context, id, key string) ([]byte, bool, error)
	// SetValue stores the application's value for key (JSON).
	SetValue(ctx context.Context, id, key string, value []byte) error
	// Values returns all the application's values of the session.
	Values(ctx context.Context, id string) (map[string][]byte, error)

	// Append allocates the next seqs of the session, in order, and appends
	// the frames to its log (and their steps to its thread) atomically, in
	// one round trip.
	//
	// The store reads rec.ID, rec.UserID and rec.ThreadID only. A new step
	// takes the thread's next position; a replaced step keeps its own. When
	// the thread is persisted, a step marks it updated now (if rec.UserID
	// owns it); until then its keys expire with the session's. Frames without an ID are not
	// idempotent: a client library's retry of the call may append them
	// twice. ErrNotFound for a missing session.
	Append(ctx context.Context, rec *Record, frames ...Frame) ([]int64, error)
	// Commit is Append that also stores the application's values (raw
	// JSON by key, as SetValue stores one) in the same operation and round
	// trip, under the same fence check: a turn's values become durable
	// with the frames it produced, never after them. With no frames it
	// stores the values alone. A retried Commit is the same write.
	Commit(ctx context.Context, rec *Record, values map[string][]byte, frames ...Frame) ([]int64, error)
	// AppendUserMessage stores a user message in one round trip: dedupe by
	// ClientID, write the step, mark the thread persisted (listed for its
	// user, named ThreadName) if it was not, and append the echo.
	//
	// A call repeated with the same Echo.ID (a client library's retry
	// after a timeout, when the first attempt was applied) is the same
	// write: it stores nothing again and returns what the first attempt
	// did, not a Duplicate, with the seqs of the Then frames that carry an
	// ID (0 for one without). Duplicate means an earlier message with the
	// same ClientID.
	AppendUserMessage(ctx context.Context, rec *Record, m UserMessage) (Appended, error)
	// Log returns the logged frames with after < seq <= upto, in order.
	// The log keeps at least the last LogKeep frames; older ones are
	// trimmed, so a caller replaying from after checks that the first frame
	// has seq after+1. ErrNotFound for a missing session.
	Log(ctx context.Context, id string, after, upto int64) ([]Logged, error)
}

// Threads is the role of a Store that reads and manages threads: their
// steps, the persisted threads listed for their user (renamed, deleted),
// and the metadata and application values kept with a thread.
type Threads interface {
	// Steps returns the steps of a thread in the order they were stored
	// (none for an unknown thread), persisted or not. It reads every step:
	// the server reads ListSteps, one bounded page at a time.
	Steps(ctx context.Context, threadID string) ([]Step, error)
	// Thread returns a persisted thread with its steps and metadata, in one
	// round trip; ErrNotFound when it is unknown or not persisted yet. It
	// reads every step: the server reads ThreadInfo and ListSteps instead.
	Thread(ctx context.Context, threadID string) (Thread, error)
	// ThreadInfo is Thread without the steps (Steps nil): the thread's own
	// record (owner, name, profile, times, latest session) and its
	// metadata, in one round trip, reading no step, so that a caller checks
	// the owner before any step is loaded. ErrNotFound when the thread is
	// unknown or not persisted yet.
	ThreadInfo(ctx context.Context, threadID string) (Thread, error)
	// ListSteps returns one page of a thread's steps, persisted or not, in
	// one round trip in O(log N + Limit) for a thread of N steps. The
	// first page (no cursor) holds the newest Limit steps; StepPage.Next
	// leads to the steps stored before them. Within a page the steps are in
	// the order they were stored. The cursor is a keyset on the steps'
	// positions: steps stored while paging never appear on the later
	// (older) pages, and no step appears twice. A cursor that does not
	// decode is ErrBadCursor; an unknown thread has an empty page.
	ListSteps(ctx context.Context, threadID string, q StepQuery) (StepPage, error)
	// ListThreads returns a page of the user's persisted threads, ordered
	// by (UpdatedAt descending, ID descending), in one round trip. The
	// cursor is a keyset on that pair: no thread appears twice while
	// paging, and a thread created or updated after the first page was
	// read sorts before the cursor (it appears on a later first page).
	// A cursor that does not decode is ErrBadCursor. Without q.Q a page
	// costs O(log N + Limit) for a user with N threads; with it the threads
	// after the cursor are scanned until Limit+1 match.
	ListThreads(ctx context.Context, userID string, q ThreadQuery) (ThreadPage, error)
	// RenameThread sets the name of a persisted thread of userID (the
	// caller validates it) and returns its summary; UpdatedAt does not
	// change. ErrNotFound unless the thread is persisted and userID's.
	RenameThread(ctx context.Context, userID, threadID, name string) (ThreadSummary, error)
	// DeleteThread deletes a persisted thread of userID: its record,
	// steps, metadata and saved values, and its place in the user's list.
	// Sessions on it are not touched. ErrNotFound unless the thread is
	// persisted and userID's.
	DeleteThread(ctx context.Context, userID, threadID string) error
	// SetThreadMetadata merges md's top-level keys into the thread's
	// metadata (Thread.Metadata). It works before the thread is persisted:
	// the metadata then expires with the thread's other keys, and stops
	// expiring when the thread is persisted. ErrNotFound for a thread no
	// session was created on (or whose keys expired).
	SetThreadMetadata(ctx context.Context, threadID string, md map[string]any) error
	// SaveThreadValues replaces the application values saved with the
	// thread (raw JSON by key); they stay on the server, never in Thread.
	// Like SetThreadMetadata, it works before the thread is persisted, and
	// fails with ErrNotFound for an unknown thread.
	SaveThreadValues(ctx context.Context, threadID string, values map[string][]byte) error
	// ThreadValues returns the values saved with the thread (an empty map
	// when there are none or the thread is unknown).
	ThreadValues(ctx context.Context, threadID string) (map[string][]byte, error)
}

// Lifecycle is the role of a Store that tracks which sessions have an open
// socket, the grace period of the others, and the claims that let exactly
// one instance end a session.
type Lifecycle interface {
	// Attach marks the session as having an open socket on instance and
	// takes it out of its grace period. It fails with ErrTooManySessions
	// when the user has maxLive attached sessions other than this one
	// (maxLive 0: no limit), and with ErrEnded for an ended session. It
	// returns the session's last seq at the moment of attaching, and where
	// it was attached until then. A missing
	// session, or one of another user than userID, is ErrNotFound. instance is recorded as where the session is attached;
	// it may name the socket as well (see DetachFrom).
	Attach(ctx context.Context, id, userID, instance string, maxLive int) (Attached, error)
	// RenewInstance records that instance (no "/" in it) is alive for ttl
	// from now; an instance renews its lease well within its ttl. A ttl of
	// zero or less ends the lease now: an instance that shuts down hands
	// its sessions and their queued turns to the others at once.
	RenewInstance(ctx context.Context, instance string, ttl time.Duration) error
	// DetachDead detaches every session attached on an instance whose lease
	// ran out (as if its socket had closed, with deadline as the end of its
	// grace period), forgets the instance, and returns the sessions it
	// detached. Any instance may call it, any number of times.
	DetachDead(ctx context.Context, deadline time.Time) ([]string, error)
	// Holder returns where the session is attached now: the instance string
	// given to Attach, or "" when it is detached. ErrNotFound for a missing
	// session.
	Holder(ctx context.Context, id string) (string, error)
	// DetachFrom marks the session as having no open socket, only while it
	// is still attached as instance (the string given to Attach): a socket
	// that closes after another one took its session over detaches nothing
	// and gets false. The grace period of a detached session runs out at
	// deadline; an ended session is not put in grace again. ErrNotFound for
	// a missing session (its live mark is dropped anyway).
	DetachFrom(ctx context.Context, id, userID, instance string, deadline time.Time) (bool, error)
	// Due returns up to limit sessions whose grace period ran out at or
	// before now (limit <= 0: all), earliest deadline first.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// ClaimEnd claims the right to end the session. The first claim wins
	// (true); a retry of the same claim (same nonce) wins too; every other
	// claim loses. A winner's claim is dropped from the due list. The claim
	// lasts at least as long as the session's keys (Touch extends it).
	// Claiming a missing session drops it from the due list and fails with
	// ErrNotFound, unless it is a retry of a won claim.
	ClaimEnd(ctx context.Context, id, nonce string) (bool, error)
	// ClaimDue is ClaimEnd for the grace-period sweeper: it claims only a
	// session that is still due (detached, with a deadline at or before
	// now), so that a session reattached since Due listed it is left
	// alone (false). A retry of a won claim still wins.
	ClaimDue(ctx context.Context, id, nonce string, now time.Time) (bool, error)
}
