package server

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/chatd-project/chatd/server/internal/hub"
)

// ErrAskTimeout is returned by the ask methods when the user did not
// answer in time.
var ErrAskTimeout = errors.New("server: ask timed out")

// Default ask timeouts and file limits.
const (
	DefaultTextTimeout   = 60 * time.Second
	DefaultFileTimeout   = 90 * time.Second
	DefaultActionTimeout = 90 * time.Second
	DefaultMaxSizeMB     = 2
	DefaultMaxFiles      = 1
)

// AskUser asks the user for a text answer.
type AskUser struct {
	Content string
	// Timeout defaults to DefaultTextTimeout.
	Timeout time.Duration
}

// AskFile asks the user to upload files.
type AskFile struct {
	Content string
	// Accept lists the accepted MIME types ("text/csv", "image/*") and
	// extensions (".csv").
	Accept []string
	// MaxSizeMB is the largest file in MiB (DefaultMaxSizeMB).
	MaxSizeMB int
	// MaxFiles is how many files the answer may have (DefaultMaxFiles).
	MaxFiles int
	// Timeout defaults to DefaultFileTimeout.
	Timeout time.Duration
}

// Action is a choice offered by AskAction.
type Action struct {
	Name    string         `json:"name"`
	Label   string         `json:"label"`
	Payload map[string]any `json:"payload"`
}

// AskAction asks the user to pick one of Actions.
type AskAction struct {
	Content string
	Actions []Action
	// Timeout defaults to DefaultActionTimeout.
	Timeout time.Duration
}

// File is a file the user uploaded in answer to AskFile.
type File struct {
	ID   string
	Name string
	// MIME is the accepted type the file matched.
	MIME string
	Size int64

	open func() (io.ReadCloser, error)
}

// Open returns the file's content; the caller closes it.
func (f File) Open() (io.ReadCloser, error) { return f.open() }

// AskUser sends a text question and waits for the answer. It returns
// ErrAskTimeout when none came in time, and the context's error when the
// handler was stopped meanwhile.
func (c *Chat) AskUser(ctx context.Context, q AskUser) (string, error) {
	if q.Timeout <= 0 {
		q.Timeout = DefaultTextTimeout
	}
	answer, err := c.c.AskUser(ctx, hub.AskUser(q))
	return answer, apiError(err)
}

// AskFile asks for files and waits for the upload and the answer.
func (c *Chat) AskFile(ctx context.Context, q AskFile) ([]File, error) {
	if q.Timeout <= 0 {
		q.Timeout = DefaultFileTimeout
	}
	if q.MaxSizeMB <= 0 {
		q.MaxSizeMB = DefaultMaxSizeMB
	}
	if q.MaxFiles <= 0 {
		q.MaxFiles = DefaultMaxFiles
	}
	got, err := c.c.AskFile(ctx, hub.AskFile(q))
	if err != nil {
		return nil, apiError(err)
	}
	files := make([]File, len(got))
	for i, f := range got {
		files[i] = File{ID: f.ID, Name: f.Name, MIME: f.MIME, Size: f.Size, open: f.Open}
	}
	return files, nil
}

// AskAction offers actions and waits for the user's choice.
func (c *Chat) AskAction(ctx context.Context, q AskAction) (Action, error) {
	if q.Timeout <= 0 {
		q.Timeout = DefaultActionTimeout
	}
	offered := make([]hub.Action, len(q.Actions))
	for i, a := range q.Actions {
		offered[i] = hub.Action(a)
	}
	chosen, err := c.c.AskAction(ctx, hub.AskAction{Content: q.Content, Actions: offered, Timeout: q.Timeout})
	return Action(chosen), apiError(err)
}

// apiError gives an error of the machinery this package's sentinel (for
// errors.Is), keeping its text and its chain.
func apiError(err error) error {
	for _, m := range []struct{ from, to error }{
		{hub.ErrAskTimeout, ErrAskTimeout},
		{hub.ErrInvalidSettings, ErrInvalidSettings},
		{hub.ErrInvalidMessage, ErrInvalidMessage},
	} {
		if err == m.from {
			return m.to
		}
		if errors.Is(err, m.from) {
			return &sentinelError{sentinel: m.to, err: err}
		}
	}
	return err
}

// sentinelError is err, which is also sentinel.
type sentinelError struct{ sentinel, err error }

func (e *sentinelError) Error() string   { return e.err.Error() }
func (e *sentinelError) Unwrap() []error { return []error{e.sentinel, e.err} }
