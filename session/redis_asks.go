package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Asks = (*RedisStore)(nil)

// Meta hash fields of a file (see doc.go).
const (
	ffAsk     = "ask"
	ffName    = "name"
	ffMIME    = "mime"
	ffSize    = "size"
	ffCreated = "created"
	ffState   = "state"
	ffChunks  = "n"
)

// fileMetaKey is the key of a file's meta hash; its chunk n is the key
// plus ":<n>".
func (s *RedisStore) fileMetaKey(sessionID, fileID string) string {
	return s.ns + "f:{s:" + sessionID + "}:" + fileID
}

func chunkKey(meta string, n int) string { return meta + ":" + strconv.Itoa(n) }

// cleanupTimeout bounds the work a failed call does to undo its writes, with
// a context that its caller's cancellation does not end.
const cleanupTimeout = 10 * time.Second

// PutAsk implements Asks, in one script.
func (s *RedisStore) PutAsk(ctx context.Context, a Ask) error {
	raw, err := checkAsk(a)
	if err != nil {
		return err
	}
	exp := askExpMS(a)
	var floor int64
	if exp > 0 {
		floor = max(exp+askMargin.Milliseconds()-s.now().UnixMilli(), 0)
	}
	k := s.sessionKeys(a.SessionID)
	err = s.run(ctx, scriptPutAsk, []string{k.rec, k.ask},
		a.ID, a.Kind, exp, floor, raw, a.MaxSize, a.MaxFiles).Err()
	return scriptErr("put ask of", a.SessionID, err)
}

// PendingAsk implements Asks.
func (s *RedisStore) PendingAsk(ctx context.Context, sessionID, askID string) (Ask, error) {
	if !validID(sessionID) || askID == "" {
		return Ask{}, ErrNotFound
	}
	v, err := s.c.HMGet(ctx, s.sessionKeys(sessionID).ask, "id", "state", "exp", "ask").Result()
	if err != nil {
		return Ask{}, wrap("pending ask of", sessionID, err)
	}
	id, _ := v[0].(string)
	state, _ := v[1].(string)
	expStr, _ := v[2].(string)
	raw, _ := v[3].(string)
	exp, _ := strconv.ParseInt(expStr, 10, 64)
	if id != askID || state != askPending || askOver(exp, s.now()) {
		return Ask{}, ErrNotFound
	}
	return decodeAsk(sessionID, []byte(raw))
}

// OpenAsk implements Asks.
func (s *RedisStore) OpenAsk(ctx context.Context, sessionID string) (Ask, error) {
	if !validID(sessionID) {
		return Ask{}, ErrNotFound
	}
	v, err := s.c.HMGet(ctx, s.sessionKeys(sessionID).ask, "state", "ask").Result()
	if err != nil {
		return Ask{}, wrap("open ask of", sessionID, err)
	}
	state, _ := v[0].(string)
	raw, _ := v[1].(string)
	if state != askPending || raw == "" {
		return Ask{}, ErrNotFound
	}
	return decodeAsk(sessionID, []byte(raw))
}

// AnswerAsk implements Asks, in one script.
func (s *RedisStore) AnswerAsk(ctx context.Context, sessionID, askID string, a AskAnswer) (bool, error) {
	now := s.now()
	b, err := encodeAnswer(a, now)
	if err != nil {
		return false, err
	}
	return s.claimAsk(ctx, sessionID, askID, "answer", b, now)
}

// EndAsk implements Asks, in one script.
func (s *RedisStore) EndAsk(ctx context.Context, sessionID, askID string) (bool, error) {
	return s.claimAsk(ctx, sessionID, askID, "end", nil, s.now())
}

func (s *RedisStore) claimAsk(ctx context.Context, sessionID, askID, op string, answer []byte, now time.Time) (bool, error) {
	if !validID(sessionID) || askID == "" {
		return false, ErrNotFound
	}
	n, err := s.run(ctx, scriptClaimAsk, []string{s.sessionKeys(sessionID).ask},
		askID, newNonce(), op, now.UnixMilli(), answer).Int64()
	if err != nil {
		return false, scriptErr(op+" ask of", sessionID, err)
	}
	return n == 1, nil
}

// AskAnswer implements Asks.
func (s *RedisStore) AskAnswer(ctx context.Context, sessionID, askID string) (AskAnswer, bool, error) {
	if !validID(sessionID) || askID == "" {
		return AskAnswer{}, false, ErrNotFound
	}
	v, err := s.c.HMGet(ctx, s.sessionKeys(sessionID).ask, "id", "answer").Result()
	if err != nil {
		return AskAnswer{}, false, wrap("ask answer of", sessionID, err)
	}
	if id, _ := v[0].(string); id != askID {
		return AskAnswer{}, false, ErrNotFound
	}
	raw, ok := v[1].(string)
	if !ok {
		return AskAnswer{}, false, nil
	}
	a, err := decodeAnswer([]byte(raw))
	return a, err == nil, err
}

// PutFile implements Asks: a script reserves the file, one script per
// chunk writes it (never more than ChunkSize bytes in one value, nor in
// memory), and a script commits it; a failure releases it.
func (s *RedisStore) PutFile(ctx context.Context, meta FileMeta, r io.Reader, maxFiles int) (FileMeta, error) {
	meta, err := prepareFile(meta, s.now())
	if err != nil {
		return FileMeta{}, err
	}
	k := s.sessionKeys(meta.SessionID)
	mkey := s.fileMetaKey(meta.SessionID, meta.ID)
	nonce := newNonce()
	maxSize, err := s.run(ctx, scriptReserveFile, []string{k.rec, k.ask, k.files, mkey},
		meta.AskID, s.now().UnixMilli(), max(maxFiles, 0), meta.ID, nonce,
		ffAsk, meta.AskID, ffName, meta.Name, ffMIME, meta.MIME,
		ffCreated, meta.CreatedAt.Format(time.RFC3339Nano)).Int64()
	if err != nil {
		err = scriptErr("put file", meta.ID, err)
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrTooManyFiles) && !errors.Is(err, errFileIDTaken) {
			s.releaseFile(ctx, meta, nonce) // it may have been applied
		}
		return FileMeta{}, err
	}
	size, err := copyChunks(r, maxSize, make([]byte, ChunkSize), func(i int, b []byte) error {
		err := s.run(ctx, scriptFileChunk, []string{mkey, chunkKey(mkey, i)}, nonce, i, b).Err()
		return scriptErr("put file", meta.ID, err)
	})
	if err == nil {
		err = s.run(ctx, scriptCommitFile, []string{k.rec, k.ask, mkey},
			meta.AskID, s.now().UnixMilli(), nonce, size).Err()
		err = scriptErr("put file", meta.ID, err)
	}
	if err != nil {
		s.releaseFile(ctx, meta, nonce)
		return FileMeta{}, err
	}
	meta.Size = size
	return meta, nil
}

// releaseFile undoes the upload nonce of a file, with a context of its own:
// the caller's may be what ended the upload. When it fails too, the file's
// keys expire with the session's and its slot stays taken.
func (s *RedisStore) releaseFile(ctx context.Context, meta FileMeta, nonce string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	k := s.sessionKeys(meta.SessionID)
	_ = s.run(ctx, scriptReleaseFile, []string{s.fileMetaKey(meta.SessionID, meta.ID), k.ask, k.files},
		nonce, meta.AskID, meta.ID).Err()
}

// AskFiles implements Asks, in one script.
func (s *RedisStore) AskFiles(ctx context.Context, sessionID, askID string) ([]FileMeta, error) {
	if !validID(sessionID) || askID == "" {
		return nil, nil
	}
	res, err := s.run(ctx, scriptAskFiles, []string{s.sessionKeys(sessionID).files},
		s.fileMetaKey(sessionID, ""), askID).Slice()
	if err != nil {
		return nil, wrap("ask files of", sessionID, err)
	}
	out := make([]FileMeta, 0, len(res))
	for _, r := range res {
		row, _ := r.([]any)
		if len(row) != 5 {
			return nil, fmt.Errorf("session: ask files of %s: bad reply %v", sessionID, r)
		}
		str := func(i int) string { v, _ := row[i].(string); return v }
		f, err := parseFileMeta(sessionID, str(0), askID, str(1), str(2), str(3), str(4))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func parseFileMeta(sessionID, fileID, askID, name, mime, size, created string) (FileMeta, error) {
	f := FileMeta{ID: fileID, SessionID: sessionID, AskID: askID, Name: name, MIME: mime}
	var err error
	if f.Size, err = strconv.ParseInt(size, 10, 64); err != nil {
		return FileMeta{}, fmt.Errorf("session: file %s: size %q", fileID, size)
	}
	if f.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return FileMeta{}, fmt.Errorf("session: file %s: created %q", fileID, created)
	}
	f.CreatedAt = f.CreatedAt.UTC()
	return f, nil
}

// fileInfo reads a stored file's meta and its number of chunks.
func (s *RedisStore) fileInfo(ctx context.Context, sessionID, fileID string) (FileMeta, int, error) {
	if !validID(sessionID) || !validFileID(fileID) {
		return FileMeta{}, 0, ErrNotFound
	}
	v, err := s.c.HMGet(ctx, s.fileMetaKey(sessionID, fileID),
		ffState, ffAsk, ffName, ffMIME, ffSize, ffCreated, ffChunks).Result()
	if err != nil {
		return FileMeta{}, 0, wrap("file", fileID, err)
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	if str(0) != "ok" {
		return FileMeta{}, 0, ErrNotFound
	}
	f, err := parseFileMeta(sessionID, fileID, str(1), str(2), str(3), str(4), str(5))
	if err != nil {
		return FileMeta{}, 0, err
	}
	n, err := strconv.Atoi(str(6))
	if err != nil {
		return FileMeta{}, 0, fmt.Errorf("session: file %s: chunks %q", fileID, str(6))
	}
	return f, n, nil
}

// FileInfo implements Asks.
func (s *RedisStore) FileInfo(ctx context.Context, sessionID, fileID string) (FileMeta, error) {
	f, _, err := s.fileInfo(ctx, sessionID, fileID)
	return f, err
}

// OpenFile implements Asks: each chunk is one GET when the reader gets to
// it.
func (s *RedisStore) OpenFile(ctx context.Context, sessionID, fileID string) (io.ReadCloser, error) {
	_, n, err := s.fileInfo(ctx, sessionID, fileID)
	if err != nil {
		return nil, err
	}
	mkey := s.fileMetaKey(sessionID, fileID)
	fetch := func(i int) ([]byte, error) {
		b, err := s.c.Get(ctx, chunkKey(mkey, i)).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("session: read file %s: %w", fileID, ErrNotFound)
		}
		return b, wrap("read file", fileID, err)
	}
	return &chunkReader{fetch: fetch, n: n}, nil
}

// DeleteFiles implements Asks, in one script.
func (s *RedisStore) DeleteFiles(ctx context.Context, sessionID string, fileIDs []string) error {
	if !validID(sessionID) {
		return nil
	}
	args := make([]any, 0, 2+len(fileIDs))
	args = append(args, s.ns, sessionID)
	for _, id := range fileIDs {
		if validFileID(id) {
			args = append(args, id)
		}
	}
	if len(args) == 2 {
		return nil
	}
	k := s.sessionKeys(sessionID)
	err := s.run(ctx, scriptDeleteFiles, []string{k.ask, k.files}, args...).Err()
	return wrap("delete files of", sessionID, err)
}

// KeepFilesWithThread implements Asks, in one script.
func (s *RedisStore) KeepFilesWithThread(ctx context.Context, threadID, sessionID string, fileIDs []string) error {
	if !validID(threadID) || !validID(sessionID) {
		return ErrNotFound
	}
	args := make([]any, 0, 3+len(fileIDs))
	args = append(args, s.ns, sessionID, threadID)
	for _, id := range fileIDs {
		if !validFileID(id) {
			return fmt.Errorf("session: keep file %s with thread %s: %w", id, threadID, ErrNotFound)
		}
		args = append(args, id)
	}
	t := s.threadKeys(threadID)
	err := s.run(ctx, scriptKeepFiles, []string{t.hash, t.files, s.sessionKeys(sessionID).rec}, args...).Err()
	if err != nil {
		if _, detail, ok := strings.Cut(err.Error(), "CHATD_NOTFOUND"); ok && strings.TrimSpace(detail) != "" {
			return fmt.Errorf("session: keep files with thread %s: %s: %w", threadID, strings.TrimSpace(detail), ErrNotFound)
		}
	}
	return scriptErr("keep files with thread", threadID, err)
}
