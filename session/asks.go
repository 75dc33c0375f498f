package session

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors of PutFile.
var (
	// ErrTooLarge: the file has more bytes than the ask's MaxSize.
	ErrTooLarge = errors.New("session: file too large")
	// ErrTooManyFiles: the ask has its maximum of files already.
	ErrTooManyFiles = errors.New("session: too many files")
)

// ChunkSize is the most bytes of a file the stores keep in one piece: on
// Redis each chunk is one string value, and large values block Redis.
const ChunkSize = 1 << 20

// Kinds of asks.
const (
	AskText   = "text"
	AskFile   = "file"
	AskAction = "action"
)

// askMargin is how long after its ExpiresAt an ask is still kept, whatever
// its session's expiry, so that its timeout can still end it.
const askMargin = time.Minute

// Ask is a question a handler is waiting on, kept in the store so that a
// client reattached on any instance can answer it.
type Ask struct {
	ID, SessionID string
	Kind          string    // "text", "file" or "action"
	StepID        string    // the ask's assistant_message step
	ExpiresAt     time.Time // zero: the ask does not time out
	Accept        []string  // file: accepted MIME types and extensions
	MaxSize       int64     // file: bytes per file (<= 0: no limit)
	MaxFiles      int       // file
	Actions       []string  // action: the action names
}

// AskAnswer is the first valid answer to an ask.
type AskAnswer struct {
	Content string   // text
	Files   []string // file: file ids
	Action  string   // action: the chosen name
	At      time.Time
}

// FileMeta describes an uploaded file.
type FileMeta struct {
	ID, SessionID, AskID string
	Name                 string // base name, already cleaned by the caller
	MIME                 string // the accepted type it matched
	Size                 int64
	CreatedAt            time.Time
}

// Asks is the role of a Store that keeps the pending ask of each session
// and the files uploaded for it. Every operation is atomic; the answer and
// the end of an ask are claims that exactly one caller wins, idempotent
// under a client library's retry.
//
// An ask is pending from PutAsk until it is answered (AnswerAsk), ended
// (EndAsk), replaced by another ask of its session, or past its ExpiresAt;
// operations on an ask that is not the session's answer ErrNotFound. A
// session has one ask at a time. An ask's key lives as long as its
// session's keys and at least until a minute after its ExpiresAt.
//
// Files belong to the session they were uploaded in (they expire with its
// keys, Touch extends them, DeleteUserData deletes them), until
// KeepFilesWithThread gives them to a persisted thread: they then never
// expire and are deleted with the thread. Their content is kept in chunks
// of at most ChunkSize bytes and streamed one chunk at a time both ways.
type Asks interface {
	// PutAsk records the session's ask, replacing its previous one whatever
	// its state (the caller ends a pending one first, to tell the client).
	// Putting the session's current ask again (same ID) changes nothing, so
	// that a retry cannot reopen an answered ask. The ask lives at least
	// until ExpiresAt + 1 min and as long as the session's keys.
	// ErrNotFound for a missing session.
	PutAsk(ctx context.Context, a Ask) error
	// PendingAsk returns the session's ask askID; ErrNotFound unless it is
	// the session's ask, not answered, not ended and not past ExpiresAt.
	PendingAsk(ctx context.Context, sessionID, askID string) (Ask, error)
	// AnswerAsk stores the answer of a pending ask, atomically: true when
	// this call answered it; false when it was answered or ended already,
	// or is past its ExpiresAt. The first answer is kept; an answer
	// stored twice by a client library's retry still wins once (true).
	// A zero a.At takes the store's clock. ErrNotFound when askID is not
	// the session's ask.
	AnswerAsk(ctx context.Context, sessionID, askID string, a AskAnswer) (bool, error)
	// AskAnswer returns the stored answer of the session's ask askID, and
	// whether there is one. ErrNotFound when askID is not the session's ask.
	AskAnswer(ctx context.Context, sessionID, askID string) (AskAnswer, bool, error)
	// OpenAsk returns the session's ask while it is neither answered nor
	// ended, past its ExpiresAt or not: the ask a runner that died left
	// waiting, which the runner taking its turns over ends as interrupted.
	// ErrNotFound when there is none.
	OpenAsk(ctx context.Context, sessionID string) (Ask, error)
	// EndAsk ends a pending ask without an answer (timeout, cancel,
	// interruption): true when this call ended it, even past its ExpiresAt;
	// false when it was answered or ended already. ErrNotFound when askID
	// is not the session's ask.
	EndAsk(ctx context.Context, sessionID, askID string) (bool, error)

	// PutFile stores the content read from r as a file of the ask
	// meta.AskID of the session meta.SessionID, which must be pending and
	// of kind "file" (ErrNotFound otherwise, and when it stops being
	// pending before the file is stored). It reads r to EOF in chunks of
	// at most ChunkSize bytes, holding one chunk in memory at a time, and
	// fails with ErrTooLarge as soon as more than the ask's MaxSize bytes
	// were read. It fails with ErrTooManyFiles, storing nothing, when the
	// ask has maxFiles files already (maxFiles <= 0: the ask's MaxFiles;
	// both <= 0: no limit); the file's slot is taken atomically before
	// reading and given back on failure, so concurrent uploads never pass
	// the limit. On any failure nothing of the file is kept.
	//
	// meta.ID is the file's id (at most 128 bytes, without braces, colons
	// or control characters; "" for a new random one); meta.Size is
	// ignored; a zero CreatedAt takes the store's clock. It returns meta as
	// stored, with ID, Size and CreatedAt set.
	PutFile(ctx context.Context, meta FileMeta, r io.Reader, maxFiles int) (FileMeta, error)
	// AskFiles returns the files stored for the session's ask askID, in
	// the order their uploads started (none for an unknown ask).
	AskFiles(ctx context.Context, sessionID, askID string) ([]FileMeta, error)
	// FileInfo returns a stored file of the session; ErrNotFound unless it
	// was uploaded in that session (and is not being uploaded still).
	FileInfo(ctx context.Context, sessionID, fileID string) (FileMeta, error)
	// OpenFile returns the content of a file of the session, fetched one
	// chunk at a time as it is read, with ctx; ErrNotFound as FileInfo. A
	// read fails (with ErrNotFound) when the file was deleted meanwhile.
	OpenFile(ctx context.Context, sessionID, fileID string) (io.ReadCloser, error)
	// DeleteFiles deletes files of the session, kept with a thread or not;
	// unknown ids are ignored. A file of the session's current ask gives
	// its slot back.
	DeleteFiles(ctx context.Context, sessionID string, fileIDs []string) error
	// KeepFilesWithThread gives files of the session to a persisted thread
	// (the one the ask's answer was stored in): they stop expiring with the
	// session and are deleted with the thread (DeleteThread,
	// DeleteUserData). FileInfo and OpenFile keep working with sessionID.
	// ErrNotFound, keeping nothing, when the thread is not persisted (or
	// not of the session's user), or a file is not a stored file of the
	// session or is kept with another thread. Keeping a file again is
	// harmless.
	KeepFilesWithThread(ctx context.Context, threadID, sessionID string, fileIDs []string) error
}

// Ask states, as the stores keep them.
const (
	askPending  = "pending"
	askAnswered = "answered"
	askEnded    = "ended"
)

// askJSON is how both stores keep an ask.
type askJSON struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	StepID    string    `json:"step_id,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Accept    []string  `json:"accept,omitempty"`
	MaxSize   int64     `json:"max_size,omitempty"`
	MaxFiles  int       `json:"max_files,omitempty"`
	Actions   []string  `json:"actions,omitempty"`
}

// checkAsk validates an ask given to PutAsk and encodes it.
func checkAsk(a Ask) ([]byte, error) {
	if !validID(a.SessionID) {
		return nil, ErrNotFound
	}
	if !validID(a.ID) {
		return nil, fmt.Errorf("session: put ask: invalid ask id %q", a.ID)
	}
	switch a.Kind {
	case AskText, AskFile, AskAction:
	default:
		return nil, fmt.Errorf("session: put ask %s: invalid kind %q", a.ID, a.Kind)
	}
	return json.Marshal(askJSON{
		ID: a.ID, Kind: a.Kind, StepID: a.StepID, ExpiresAt: normTime(a.ExpiresAt),
		Accept: a.Accept, MaxSize: a.MaxSize, MaxFiles: a.MaxFiles, Actions: a.Actions,
	})
}

func decodeAsk(sessionID string, b []byte) (Ask, error) {
	var j askJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Ask{}, fmt.Errorf("session: ask of %s: %w", sessionID, err)
	}
	return Ask{
		ID: j.ID, SessionID: sessionID, Kind: j.Kind, StepID: j.StepID, ExpiresAt: j.ExpiresAt,
		Accept: j.Accept, MaxSize: j.MaxSize, MaxFiles: j.MaxFiles, Actions: j.Actions,
	}, nil
}

// askExpMS is an ask's ExpiresAt in Unix ms (0: none); the stores compare
// it with their clock's Unix ms, so both agree to the millisecond.
func askExpMS(a Ask) int64 {
	if a.ExpiresAt.IsZero() {
		return 0
	}
	return max(a.ExpiresAt.UnixMilli(), 1)
}

// askOver reports whether an ask expiring at exp (ms, 0: never) is past it.
func askOver(exp int64, now time.Time) bool { return exp > 0 && now.UnixMilli() >= exp }

// answerJSON is how both stores keep an answer.
type answerJSON struct {
	Content string    `json:"content,omitempty"`
	Files   []string  `json:"files,omitempty"`
	Action  string    `json:"action,omitempty"`
	At      time.Time `json:"at"`
}

func encodeAnswer(a AskAnswer, now time.Time) ([]byte, error) {
	if a.At.IsZero() {
		a.At = now
	}
	return json.Marshal(answerJSON{Content: a.Content, Files: a.Files, Action: a.Action, At: normTime(a.At)})
}

func decodeAnswer(b []byte) (AskAnswer, error) {
	var j answerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return AskAnswer{}, fmt.Errorf("session: ask answer: %w", err)
	}
	return AskAnswer(j), nil
}

// newNonce returns a fresh random nonce for a claim or an upload.
func newNonce() string { return rand.Text() }

// validFileID reports whether id can name a file: a valid id without
// colons (the Redis chunk keys append ":<n>" to it).
func validFileID(id string) bool { return validID(id) && !strings.Contains(id, ":") }

// prepareFile validates the meta given to PutFile and fills in its ID and
// CreatedAt.
func prepareFile(meta FileMeta, now time.Time) (FileMeta, error) {
	if !validID(meta.SessionID) || !validID(meta.AskID) {
		return FileMeta{}, ErrNotFound
	}
	switch {
	case meta.ID == "":
		meta.ID = rand.Text()
	case !validFileID(meta.ID):
		return FileMeta{}, fmt.Errorf("session: put file: invalid file id %q", meta.ID)
	}
	if meta.CreatedAt.IsZero() {
		meta.CreatedAt = now
	}
	meta.CreatedAt = normTime(meta.CreatedAt)
	meta.Size = 0
	return meta, nil
}

// fileLimit is the number of files an ask may have: maxFiles, else the
// ask's MaxFiles; 0 for no limit.
func fileLimit(maxFiles, askMax int) int {
	if maxFiles > 0 {
		return maxFiles
	}
	return max(askMax, 0)
}

// copyChunks reads r to EOF through buf (ChunkSize bytes), filling it
// before calling put with each chunk (so every chunk but the last is full),
// and returns the bytes read. It fails with ErrTooLarge as soon as more than
// maxSize bytes were read (maxSize <= 0: no limit), before putting the chunk
// that holds them.
func copyChunks(r io.Reader, maxSize int64, buf []byte, put func(i int, chunk []byte) error) (int64, error) {
	if maxSize > 0 {
		r = io.LimitReader(r, maxSize+1)
	}
	var total int64
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		total += int64(n)
		if maxSize > 0 && total > maxSize {
			return total, ErrTooLarge
		}
		if n > 0 {
			if perr := put(i, buf[:n]); perr != nil {
				return total, perr
			}
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return total, nil
		case err != nil:
			return total, fmt.Errorf("session: put file: read: %w", err)
		}
	}
}

// errFileIDTaken: PutFile of a file id the session has already.
var errFileIDTaken = errors.New("file id taken")

// errReaderClosed is what a file reader's Read returns after Close.
var errReaderClosed = errors.New("session: read of a closed file")

// chunkReader streams a file's chunks, fetching each when the previous one
// was read. It is not safe for concurrent use.
type chunkReader struct {
	fetch  func(i int) ([]byte, error)
	n, i   int    // chunks in the file; the next to fetch
	cur    []byte // what is left of the current chunk
	closed bool
}

// Read implements io.Reader.
func (r *chunkReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errReaderClosed
	}
	for len(r.cur) == 0 {
		if r.i >= r.n {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// WriteTo implements io.WriterTo: io.Copy writes each chunk as fetched.
func (r *chunkReader) WriteTo(w io.Writer) (int64, error) {
	if r.closed {
		return 0, errReaderClosed
	}
	var total int64
	for {
		if len(r.cur) > 0 {
			n, err := w.Write(r.cur)
			total += int64(n)
			r.cur = r.cur[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if r.i >= r.n {
			return total, nil
		}
		if err := r.next(); err != nil {
			return total, err
		}
	}
}

func (r *chunkReader) next() error {
	b, err := r.fetch(r.i)
	if err != nil {
		return err
	}
	r.i++
	r.cur = b
	return nil
}

// Close implements io.Closer.
func (r *chunkReader) Close() error {
	r.closed, r.cur = true, nil
	return nil
}
