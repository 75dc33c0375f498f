package session

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

var _ Asks = (*MemoryStore)(nil)

// memAskFiles holds the MemoryStore's asks and files; its mu guards it.
type memAskFiles struct {
	asks  map[string]*memAsk                 // by session id
	files map[string]map[string]*memFile     // session id → file id → file
	kept  map[string]map[memFileRef]struct{} // thread id → the files kept with it
	seq   int64                              // upload order, over all files
}

type memFileRef struct{ sid, fid string }

func newMemAskFiles() memAskFiles {
	return memAskFiles{
		asks:  make(map[string]*memAsk),
		files: make(map[string]map[string]*memFile),
		kept:  make(map[string]map[memFileRef]struct{}),
	}
}

type memAsk struct {
	id, kind string
	raw      []byte    // askJSON
	exp      int64     // ExpiresAt, Unix ms; 0: none
	floor    time.Time // kept at least until then (ExpiresAt + askMargin); zero: none
	maxSize  int64
	maxFiles int
	state    string // askPending, askAnswered, askEnded
	answer   []byte // answerJSON once answered
	nfiles   int    // slots taken by files stored or being uploaded
}

type memFile struct {
	meta   FileMeta
	done   bool     // stored; false while being uploaded
	chunks [][]byte // each at most ChunkSize bytes; never modified
	thread string   // the thread it is kept with; "" while it is the session's
	seq    int64
}

// askLocked returns the session's ask while it lives: as long as the session
// does, and at least until its floor.
func (m *MemoryStore) askLocked(sid string, now time.Time) *memAsk {
	a := m.af.asks[sid]
	if a == nil {
		return nil
	}
	if m.sessionLocked(sid, now) == nil && (a.floor.IsZero() || !now.Before(a.floor)) {
		delete(m.af.asks, sid)
		return nil
	}
	return a
}

// fileLocked returns a file (stored or being uploaded) while it lives: as
// long as its session does, or for good once kept with a thread.
func (m *MemoryStore) fileLocked(sid, fid string, now time.Time) *memFile {
	f := m.af.files[sid][fid]
	if f == nil {
		return nil
	}
	if f.thread == "" && m.sessionLocked(sid, now) == nil {
		m.deleteFileLocked(sid, fid)
		return nil
	}
	return f
}

// deleteFileLocked drops a file from every index.
func (m *MemoryStore) deleteFileLocked(sid, fid string) {
	fs := m.af.files[sid]
	f := fs[fid]
	if f == nil {
		return
	}
	delete(fs, fid)
	if len(fs) == 0 {
		delete(m.af.files, sid)
	}
	if f.thread != "" {
		if k := m.af.kept[f.thread]; k != nil {
			delete(k, memFileRef{sid, fid})
			if len(k) == 0 {
				delete(m.af.kept, f.thread)
			}
		}
	}
}

// deleteThreadFilesLocked deletes the files kept with a thread.
func (m *MemoryStore) deleteThreadFilesLocked(tid string) {
	for ref := range m.af.kept[tid] {
		m.deleteFileLocked(ref.sid, ref.fid)
	}
	delete(m.af.kept, tid)
}

// deleteSessionAskFilesLocked deletes a session's ask and all its files,
// kept with a thread or not.
func (m *MemoryStore) deleteSessionAskFilesLocked(sid string) {
	delete(m.af.asks, sid)
	for fid := range m.af.files[sid] {
		m.deleteFileLocked(sid, fid)
	}
}

// sweepAskFilesLocked drops the asks and files that expired; sweepLocked
// calls it after dropping the expired sessions.
func (m *MemoryStore) sweepAskFilesLocked(now time.Time) {
	for sid := range m.af.asks {
		m.askLocked(sid, now)
	}
	for sid, fs := range m.af.files {
		for fid := range fs {
			m.fileLocked(sid, fid, now)
		}
	}
}

// PutAsk implements Asks.
func (m *MemoryStore) PutAsk(ctx context.Context, a Ask) error {
	raw, err := checkAsk(a)
	if err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessionLocked(a.SessionID, now) == nil {
		return ErrNotFound
	}
	if cur := m.askLocked(a.SessionID, now); cur != nil && cur.id == a.ID {
		return nil
	}
	ma := &memAsk{
		id: a.ID, kind: a.Kind, raw: raw, exp: askExpMS(a),
		maxSize: a.MaxSize, maxFiles: a.MaxFiles, state: askPending,
	}
	if ma.exp > 0 {
		ma.floor = time.UnixMilli(ma.exp).Add(askMargin)
	}
	m.af.asks[a.SessionID] = ma
	return nil
}

// pendingLocked returns the session's ask askID if it is pending at now.
func (m *MemoryStore) pendingLocked(sid, askID string, now time.Time) *memAsk {
	a := m.askLocked(sid, now)
	if a == nil || a.id != askID || a.state != askPending || askOver(a.exp, now) {
		return nil
	}
	return a
}

// PendingAsk implements Asks.
func (m *MemoryStore) PendingAsk(ctx context.Context, sessionID, askID string) (Ask, error) {
	m.mu.Lock()
	a := m.pendingLocked(sessionID, askID, m.now())
	var raw []byte
	if a != nil {
		raw = a.raw
	}
	m.mu.Unlock()
	if raw == nil {
		return Ask{}, ErrNotFound
	}
	return decodeAsk(sessionID, raw)
}

// OpenAsk implements Asks.
func (m *MemoryStore) OpenAsk(ctx context.Context, sessionID string) (Ask, error) {
	m.mu.Lock()
	var raw []byte
	if a := m.askLocked(sessionID, m.now()); a != nil && a.state == askPending {
		raw = a.raw
	}
	m.mu.Unlock()
	if raw == nil {
		return Ask{}, ErrNotFound
	}
	return decodeAsk(sessionID, raw)
}

// AnswerAsk implements Asks.
func (m *MemoryStore) AnswerAsk(ctx context.Context, sessionID, askID string, ans AskAnswer) (bool, error) {
	now := m.now()
	b, err := encodeAnswer(ans, now)
	if err != nil {
		return false, err
	}
	return m.claimAsk(sessionID, askID, askAnswered, b, now)
}

// EndAsk implements Asks.
func (m *MemoryStore) EndAsk(ctx context.Context, sessionID, askID string) (bool, error) {
	return m.claimAsk(sessionID, askID, askEnded, nil, m.now())
}

func (m *MemoryStore) claimAsk(sid, askID, state string, answer []byte, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.askLocked(sid, now)
	if a == nil || a.id != askID {
		return false, ErrNotFound
	}
	if a.state != askPending || state == askAnswered && askOver(a.exp, now) {
		return false, nil
	}
	a.state, a.answer = state, answer
	return true, nil
}

// AskAnswer implements Asks.
func (m *MemoryStore) AskAnswer(ctx context.Context, sessionID, askID string) (AskAnswer, bool, error) {
	m.mu.Lock()
	a := m.askLocked(sessionID, m.now())
	if a == nil || a.id != askID {
		m.mu.Unlock()
		return AskAnswer{}, false, ErrNotFound
	}
	b := a.answer
	m.mu.Unlock()
	if b == nil {
		return AskAnswer{}, false, nil
	}
	ans, err := decodeAnswer(b)
	return ans, err == nil, err
}

// PutFile implements Asks. The content is kept in memory, in chunks.
func (m *MemoryStore) PutFile(ctx context.Context, meta FileMeta, r io.Reader, maxFiles int) (FileMeta, error) {
	meta, err := prepareFile(meta, m.now())
	if err != nil {
		return FileMeta{}, err
	}
	f, maxSize, err := m.reserveFile(meta, maxFiles)
	if err != nil {
		return FileMeta{}, err
	}
	var chunks [][]byte
	size, err := copyChunks(r, maxSize, make([]byte, ChunkSize), func(_ int, b []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunks = append(chunks, bytes.Clone(b))
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		m.releaseFile(meta, f)
		return FileMeta{}, err
	}
	meta.Size = size
	if err := m.commitFile(meta, f, chunks); err != nil {
		m.releaseFile(meta, f)
		return FileMeta{}, err
	}
	return meta, nil
}

// reserveFile takes a slot of the ask for the file, which it records as
// being uploaded; it returns the file and the ask's MaxSize.
func (m *MemoryStore) reserveFile(meta FileMeta, maxFiles int) (*memFile, int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessionLocked(meta.SessionID, now) == nil {
		return nil, 0, ErrNotFound
	}
	a := m.pendingLocked(meta.SessionID, meta.AskID, now)
	if a == nil || a.kind != AskFile {
		return nil, 0, ErrNotFound
	}
	if m.fileLocked(meta.SessionID, meta.ID, now) != nil {
		return nil, 0, fmt.Errorf("session: put file %s: %w", meta.ID, errFileIDTaken)
	}
	if limit := fileLimit(maxFiles, a.maxFiles); limit > 0 && a.nfiles >= limit {
		return nil, 0, ErrTooManyFiles
	}
	a.nfiles++
	m.af.seq++
	f := &memFile{meta: meta, seq: m.af.seq}
	fs := m.af.files[meta.SessionID]
	if fs == nil {
		fs = make(map[string]*memFile)
		m.af.files[meta.SessionID] = fs
	}
	fs[meta.ID] = f
	return f, a.maxSize, nil
}

// commitFile stores the content of a reserved file, if the reservation is
// still there and the ask still pending.
func (m *MemoryStore) commitFile(meta FileMeta, f *memFile, chunks [][]byte) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fileLocked(meta.SessionID, meta.ID, now) != f || m.pendingLocked(meta.SessionID, meta.AskID, now) == nil {
		return ErrNotFound
	}
	f.meta, f.chunks, f.done = meta, chunks, true
	return nil
}

// releaseFile drops a reserved file and gives its slot back.
func (m *MemoryStore) releaseFile(meta FileMeta, f *memFile) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.af.files[meta.SessionID][meta.ID] != f {
		return
	}
	m.deleteFileLocked(meta.SessionID, meta.ID)
	if a := m.af.asks[meta.SessionID]; a != nil && a.id == meta.AskID && a.nfiles > 0 {
		a.nfiles--
	}
}

// AskFiles implements Asks.
func (m *MemoryStore) AskFiles(ctx context.Context, sessionID, askID string) ([]FileMeta, error) {
	now := m.now()
	m.mu.Lock()
	var fs []*memFile
	for fid := range m.af.files[sessionID] {
		if f := m.fileLocked(sessionID, fid, now); f != nil && f.done && f.meta.AskID == askID {
			fs = append(fs, f)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(fs, func(a, b *memFile) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]FileMeta, len(fs))
	for i, f := range fs {
		out[i] = f.meta
	}
	return out, nil
}

// storedLocked returns a stored file of the session, or nil.
func (m *MemoryStore) storedLocked(sid, fid string, now time.Time) *memFile {
	f := m.fileLocked(sid, fid, now)
	if f == nil || !f.done {
		return nil
	}
	return f
}

// FileInfo implements Asks.
func (m *MemoryStore) FileInfo(ctx context.Context, sessionID, fileID string) (FileMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.storedLocked(sessionID, fileID, m.now())
	if f == nil {
		return FileMeta{}, ErrNotFound
	}
	return f.meta, nil
}

// OpenFile implements Asks. Each chunk is looked up as it is read, so that
// a deleted file stops reading as it does on Redis.
func (m *MemoryStore) OpenFile(ctx context.Context, sessionID, fileID string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.storedLocked(sessionID, fileID, m.now())
	if f == nil {
		return nil, ErrNotFound
	}
	fetch := func(i int) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.storedLocked(sessionID, fileID, m.now()) != f {
			return nil, fmt.Errorf("session: read file %s: %w", fileID, ErrNotFound)
		}
		return f.chunks[i], nil // never modified: shared read-only
	}
	return &chunkReader{fetch: fetch, n: len(f.chunks)}, nil
}

// DeleteFiles implements Asks.
func (m *MemoryStore) DeleteFiles(ctx context.Context, sessionID string, fileIDs []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.af.asks[sessionID]
	for _, fid := range fileIDs {
		f := m.af.files[sessionID][fid]
		if f == nil {
			continue
		}
		m.deleteFileLocked(sessionID, fid)
		if a != nil && a.id == f.meta.AskID && a.nfiles > 0 {
			a.nfiles--
		}
	}
	return nil
}

// KeepFilesWithThread implements Asks.
func (m *MemoryStore) KeepFilesWithThread(ctx context.Context, threadID, sessionID string, fileIDs []string) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.threadLocked(threadID, now)
	if t == nil || !t.persisted {
		return fmt.Errorf("session: keep files with thread %s: not persisted: %w", threadID, ErrNotFound)
	}
	if s := m.sessionLocked(sessionID, now); s != nil && s.rec.UserID != t.userID {
		return ErrNotFound
	}
	fs := make([]*memFile, len(fileIDs))
	for i, fid := range fileIDs {
		f := m.storedLocked(sessionID, fid, now)
		if f == nil || f.thread != "" && f.thread != threadID {
			return fmt.Errorf("session: keep file %s with thread %s: %w", fid, threadID, ErrNotFound)
		}
		fs[i] = f
	}
	k := m.af.kept[threadID]
	if k == nil && len(fs) > 0 {
		k = make(map[memFileRef]struct{})
		m.af.kept[threadID] = k
	}
	for i, f := range fs {
		f.thread = threadID
		k[memFileRef{sessionID, fileIDs[i]}] = struct{}{}
	}
	return nil
}
