package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatd-project/chatd/wire"
)

// maxErrorBody bounds how much of an HTTP error body is read.
const maxErrorBody = 64 << 10

// maxBody bounds how much of a successful HTTP response body is read.
const maxBody = 16 << 20

// Client talks to one chat server: its HTTP routes, and the sockets of the
// sessions it opens. It holds the token every request and socket is
// authenticated with. A Client is safe for concurrent use, and many
// sessions may share it (and its token).
type Client struct {
	base *url.URL
	http *http.Client

	mu    sync.Mutex // guards token
	token string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its HTTP requests and WebSocket
// upgrades with hc instead of a client of its own (which has no timeout:
// every call takes a context).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithToken authenticates the client with an existing token instead of a
// login.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// New returns a client of the server at baseURL (http:// or https://, with
// an optional path prefix when the server is mounted below one).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q is not an http:// or https:// URL", baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Token returns the token the client authenticates with ("" for none).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// SetToken makes the client authenticate with token from now on.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
}

// LoginResult is the answer to a successful login.
type LoginResult struct {
	// User is the signed-in user.
	User wire.User `json:"user"`
	// Token is the new token; the client authenticates with it from now
	// on.
	Token string `json:"token"`
	// ExpiresAt is the token's absolute expiry.
	ExpiresAt time.Time `json:"expires_at"`
}

// Login signs in with an identifier and a password (POST /auth/login) and
// keeps the token. A wrong identifier or password gives an *Error that
// unwraps to ErrInvalidCredentials; too many failures, ErrRateLimited; a
// full hashing queue, ErrUnavailable (both with RetryAfter).
//
// The client's current token is not sent with the login, so that sessions
// still using it are not cut off (the server revokes a token sent with a
// login).
func (c *Client) Login(ctx context.Context, identifier, password string) (*LoginResult, error) {
	body, err := json.Marshal(map[string]string{"identifier": identifier, "password": password})
	if err != nil {
		return nil, fmt.Errorf("client: encode login: %w", err)
	}
	var out LoginResult
	if err := c.do(ctx, http.MethodPost, "/auth/login", nil, "application/json", bytes.NewReader(body), false, &out); err != nil {
		return nil, err
	}
	if out.Token == "" {
		return nil, fmt.Errorf("client: login answered without a token")
	}
	c.SetToken(out.Token)
	return &out, nil
}

// Logout revokes the client's token (POST /auth/logout) and forgets it.
// The server closes every socket opened with it (their sessions end with
// ErrUnauthorized).
func (c *Client) Logout(ctx context.Context) error {
	if err := c.do(ctx, http.MethodPost, "/auth/logout", nil, "", nil, true, nil); err != nil {
		return err
	}
	c.SetToken("")
	return nil
}

// Me returns the signed-in user (GET /auth/me).
func (c *Client) Me(ctx context.Context) (*wire.User, error) {
	var u wire.User
	if err := c.do(ctx, http.MethodGet, "/auth/me", nil, "", nil, true, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// UploadFile is a file to upload in answer to a file ask.
type UploadFile struct {
	// Name is the file's name; its extension must map to a type the ask
	// accepts.
	Name string
	// Content is read to its end.
	Content io.Reader
}

// Upload uploads files for the pending file ask askID of the session
// sessionID (POST /files) and returns their references, whose ids answer
// the ask (Session.AnswerFiles). Session.Upload fills in the session.
func (c *Client) Upload(ctx context.Context, sessionID, askID string, files ...UploadFile) ([]wire.FileRef, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("client: upload: no files")
	}
	// The body is built in memory, so that it has a Content-Length: the
	// server refuses an oversized upload by it before reading.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		w, err := mw.CreateFormFile("file", f.Name)
		if err != nil {
			return nil, fmt.Errorf("client: upload %s: %w", f.Name, err)
		}
		if f.Content != nil {
			if _, err := io.Copy(w, f.Content); err != nil {
				return nil, fmt.Errorf("client: upload %s: %w", f.Name, err)
			}
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("client: upload: %w", err)
	}
	q := url.Values{"session_id": {sessionID}, "ask_id": {askID}}
	var out struct {
		Files []wire.FileRef `json:"files"`
	}
	if err := c.do(ctx, http.MethodPost, "/files", q, mw.FormDataContentType(), &body, true, &out); err != nil {
		return nil, err
	}
	return out.Files, nil
}

// url returns the absolute URL of a route.
func (c *Client) url(path string, q url.Values) *url.URL {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return &u
}

// do sends a request and decodes a 2xx JSON answer into out (nil: the body
// is dropped); another status is returned as an *Error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader, auth bool, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q).String(), body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if tok := c.Token(); auth && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		return httpError(res, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxBody))
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// httpError turns an error answer into an *Error.
func httpError(res *http.Response, body []byte) error {
	e := &Error{Status: res.StatusCode}
	var eb wire.ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	} else {
		e.Code = codeOfStatus(res.StatusCode)
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	if ra := res.Header.Get("Retry-After"); ra != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// codeOfStatus is the code of an error answer without a JSON body (one
// from a proxy in front of the server).
func codeOfStatus(status int) wire.Code {
	switch status {
	case http.StatusBadRequest:
		return wire.CodeBadRequest
	case http.StatusUnauthorized:
		return wire.CodeUnauthorized
	case http.StatusForbidden:
		return wire.CodeForbidden
	case http.StatusNotFound:
		return wire.CodeNotFound
	case http.StatusTooManyRequests:
		return wire.CodeRateLimited
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return wire.CodeUnavailable
	}
	return wire.CodeInternal
}

// IsCode reports whether err is, or wraps, an *Error with code.
func IsCode(err error, code wire.Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// readAllLimited reads r to its end, or to n bytes.
func readAllLimited(r io.Reader, n int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, n))
}
