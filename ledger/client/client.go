// Package client talks to a ledger node's HTTP API (ledger/node): blobs,
// entries, proofs and checkpoints. It trusts nothing the node says about
// the log: callers verify checkpoints and proofs with keys they hold
// (proofs.OpenCheckpoint, proofs.VerifyConsistency, proofs.VerifyReceipt).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Error is an error answer from the node.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("node answered %d %s: %s", e.Status, e.Code, e.Message)
}

// ErrNotFound is wrapped by a 404 answer.
var ErrNotFound = errors.New("not found on the node")

// Unwrap lets errors.Is(err, ErrNotFound) see 404s.
func (e *Error) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return ErrNotFound
	}
	return nil
}

// Client is a node's API client. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	// UnavailableWait is how long, in all, the client waits out a node's
	// answers of 503 with a Retry-After (its storage away, a failover
	// under way) on a request it may repeat; New sets
	// DefaultUnavailableWait, and 0 answers the first 503.
	UnavailableWait time.Duration
	// Waiting, when set, is told of each answer the client waits out
	// before asking again: its status, the node's reason and the wait.
	Waiting func(status int, reason string, wait time.Duration)
}

// DefaultUnavailableWait is a new client's UnavailableWait: longer than
// a failover between replicas takes.
const DefaultUnavailableWait = 30 * time.Second

// MaxResponse bounds JSON and checkpoint answers (blobs stream).
const MaxResponse = 16 << 20

// New returns a client for the node at baseURL (http or https), sending
// token, if not empty, as a bearer token.
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("node URL %q: want http://host:port or https://host:port", baseURL)
	}
	return &Client{base: u, token: token, hc: &http.Client{Timeout: 0, Transport: &http.Transport{
		MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 5 * time.Minute,
	}}, UnavailableWait: DefaultUnavailableWait}, nil
}

// do sends a request. path is escaped (url.PathEscape each segment). An
// answer of 429 is retried after its Retry-After, a few times, and one of
// 503 with a Retry-After (the node's storage away, a failover under way)
// for up to UnavailableWait, when the request may be repeated (a read,
// or a write the node takes idempotently) and its body can be sent again.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64) (*http.Response, error) {
	// A body that can be read again from where it starts (bytes in
	// memory, a file) is sent as a section reader of its own each try:
	// the transport may still be reading an earlier try's when its
	// answer comes, and a retry must not share that reader. The section
	// runs to the body's end, not size bytes, so that the transport
	// still finds a body longer than size and refuses it, and reads one
	// of size 0 (a file that says it is empty, as in /proc) whole.
	var reopen func() io.Reader
	if body != nil && size >= 0 {
		ra, isReaderAt := body.(io.ReaderAt)
		sk, isSeeker := body.(io.Seeker)
		if isReaderAt && isSeeker {
			if pos, err := sk.Seek(0, io.SeekCurrent); err == nil {
				reopen = func() io.Reader { return io.NewSectionReader(ra, pos, math.MaxInt64-pos) }
			}
		}
	}
	var (
		limited int           // 429s waited out
		waited  time.Duration // on 503s
	)
	for {
		b := body
		if reopen != nil {
			b = reopen()
		}
		resp, err := c.send(ctx, method, path, q, b, size, reopen)
		if err != nil {
			return nil, err
		}
		var (
			wait  = retryWait(resp.Header)
			again bool
		)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests && limited < maxRetries:
			limited++
			again = true
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && repeatable(method, path):
			// Each wait counts a second at least, which also bounds
			// the tries when the node says to wait no time.
			waited += max(wait, time.Second)
			again = waited <= c.UnavailableWait
		}
		if !again || (body != nil && reopen == nil) {
			return answer(resp)
		}
		if c.Waiting != nil {
			c.Waiting(resp.StatusCode, reason(resp), wait)
		}
		resp.Body.Close()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Retries of a rate-limited request: at most maxRetries, each waiting the
// node's Retry-After up to maxRetryWait.
const (
	maxRetries   = 5
	maxRetryWait = 30 * time.Second
)

// repeatable reports whether a request may be sent again after the node
// answered that it could not take it: reads, and the writes the node
// takes idempotently (a blob, an entry or a release record sent twice is
// stored once).
func repeatable(method, path string) bool {
	switch method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodPost:
		return path == "/v1/blobs" || path == "/v1/entries" || path == "/v1/releases"
	}
	return false
}

// reason returns the code of the node's error answer, read from a copy
// of its body, which stays readable.
func reason(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var e struct{ Error struct{ Code string } }
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		return resp.Status
	}
	return e.Error.Code
}

// retryWait is how long an answer's Retry-After (in seconds) says to
// wait: a second when it says nothing usable, maxRetryWait at most.
func retryWait(h http.Header) time.Duration {
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs < 0 {
		secs = 1
	}
	return min(time.Duration(secs)*time.Second, maxRetryWait)
}

// send sends one request. reopen, when set, gives the body afresh, for
// the transport to send again after a connection that failed unused.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64, reopen func() io.Reader) (*http.Response, error) {
	u := *c.base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return nil, fmt.Errorf("request path %q: %w", path, err)
	}
	u.RawPath = c.base.EscapedPath() + path
	u.Path += unescaped
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	if reopen != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(reopen()), nil }
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.hc.Do(req)
}

// answer turns an error answer into an *Error.
func answer(resp *http.Response) (*http.Response, error) {
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string }
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return nil, &Error{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(b))}
		}
		return nil, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, MaxResponse)).Decode(v)
}

// Checkpoint fetches the latest signed checkpoint. The caller verifies it.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.checkpoint(ctx, url.Values{})
}

// CheckpointAt fetches the checkpoint the log signed at size.
func (c *Client) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	return c.checkpoint(ctx, url.Values{"size": {strconv.FormatUint(size, 10)}})
}

func (c *Client) checkpoint(ctx context.Context, q url.Values) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/checkpoint", q, nil, -1)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
}

// ProveConsistency fetches the proof that the tree of size from is a
// prefix of the tree of size to.
func (c *Client) ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error) {
	var p proofs.ConsistencyProof
	err := c.getJSON(ctx, "/v1/proofs/consistency", url.Values{"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}, &p)
	return p, err
}

// ProveInclusion fetches the proof that entry index is in the tree of size.
func (c *Client) ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error) {
	var p proofs.InclusionProof
	err := c.getJSON(ctx, "/v1/proofs/inclusion", url.Values{"index": {strconv.FormatUint(index, 10)}, "tree_size": {strconv.FormatUint(size, 10)}}, &p)
	return p, err
}

// PutBlob uploads a blob of size bytes (-1 if unknown); with expect, the
// node refuses other content.
func (c *Client) PutBlob(ctx context.Context, r io.Reader, size int64, expect *cas.Digest) (cas.Digest, error) {
	q := url.Values{}
	if expect != nil {
		q.Set("digest", expect.String())
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/blobs", q, r, size)
	if err != nil {
		return cas.Digest{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Digest cas.Digest `json:"digest"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxResponse)).Decode(&out); err != nil {
		return cas.Digest{}, err
	}
	return out.Digest, nil
}

// Append appends an entry of kind with subject (any JSON-encodable value)
// and returns the receipt, which the caller verifies.
func (c *Client) Append(ctx context.Context, kind string, subject any) (proofs.Receipt, error) {
	b, err := json.Marshal(map[string]any{"kind": kind, "subject": subject})
	if err != nil {
		return proofs.Receipt{}, err
	}
	return c.postReceipt(ctx, "/v1/entries", b)
}

// postReceipt posts a JSON body and parses the receipt the node answers.
func (c *Client) postReceipt(ctx context.Context, path string, b []byte) (proofs.Receipt, error) {
	resp, err := c.do(ctx, http.MethodPost, path, nil, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return proofs.Receipt{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil {
		return proofs.Receipt{}, err
	}
	return proofs.ParseReceipt(body)
}

// GetBlob streams blob d into w, verifying its digest (and the length the
// node announced) as it goes; a blob that does not verify is an error,
// after w has seen the bytes, so write to a temporary place.
func (c *Client) GetBlob(ctx context.Context, d cas.Digest, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/blobs/"+d.String(), nil, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	g := cas.NewDigester()
	n, err := io.Copy(io.MultiWriter(w, g), resp.Body)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The node stops a blob that fails its check as it streams: the
		// status and length were sent before it knew.
		return fmt.Errorf("blob %s: the node cut it off after %d of %d bytes, as it does when its stored copy fails verification while being served (its log says; ledger audit on the node lists the damage): %w", d, n, resp.ContentLength, cas.ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("reading blob %s from the node: %w", d, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("blob %s: the node sent %d of %d bytes", d, n, resp.ContentLength)
	}
	if got := g.Digest(); got != d {
		return fmt.Errorf("blob %s: the node sent content that hashes to %s: %w", d, got, cas.ErrDigestMismatch)
	}
	return nil
}

// Query selects entries for Search; empty fields match anything.
// ReviewedHash selects stamps by REVIEWED_HASH (a node before it refuses
// the parameter).
type Query struct {
	Digest, Kind, UID, Release, KeyID, ReviewedHash string
}

// Entry is an entry as the node lists it.
type Entry struct {
	Index uint64          `json:"index"`
	Entry json.RawMessage `json:"entry"`
}

// Search returns up to limit entries (0: all) matching q, in log order
// from start, following the node's pages.
func (c *Client) Search(ctx context.Context, q Query, start uint64, limit int) ([]Entry, error) {
	var out []Entry
	for {
		v := url.Values{"start": {strconv.FormatUint(start, 10)}, "limit": {"1000"}}
		for k, x := range map[string]string{"digest": q.Digest, "kind": q.Kind, "uid": q.UID, "release": q.Release, "key_id": q.KeyID, "reviewed_hash": q.ReviewedHash} {
			if x != "" {
				v.Set(k, x)
			}
		}
		var page struct {
			Entries []Entry `json:"entries"`
			Next    *uint64 `json:"next"`
		}
		if err := c.getJSON(ctx, "/v1/entries", v, &page); err != nil {
			return nil, err
		}
		for _, e := range page.Entries {
			if limit > 0 && len(out) == limit {
				return out, nil
			}
			out = append(out, e)
		}
		if page.Next == nil || (limit > 0 && len(out) == limit) {
			return out, nil
		}
		start = *page.Next
	}
}

// HasBlob reports whether the node stores blob d (a HEAD request).
func (c *Client) HasBlob(ctx context.Context, d cas.Digest) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v1/blobs/"+d.String(), nil, nil, -1)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// RecordRelease asks the node to record a signed release whose listing,
// manifest and files are uploaded already; it returns the release
// entry's receipt (Duplicate if it was recorded before).
func (c *Client) RecordRelease(ctx context.Context, listing, manifest cas.Digest) (proofs.Receipt, error) {
	b, _ := json.Marshal(map[string]cas.Digest{"listing": listing, "manifest": manifest})
	return c.postReceipt(ctx, "/v1/releases", b)
}

// Token is a token as the node lists it (never its secret).
type Token struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt string `json:"created_at"`
	RevokedAt string `json:"revoked_at,omitempty"`
}

// CreateToken asks the node (with an admin token) for a new token and
// returns its secret, which the node shows only this once.
func (c *Client) CreateToken(ctx context.Context, name, role string) (string, error) {
	b, _ := json.Marshal(map[string]string{"name": name, "role": role})
	resp, err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, MaxResponse)).Decode(&out)
	return out.Token, err
}

// Tokens lists the node's tokens (admin only).
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.getJSON(ctx, "/v1/tokens", nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the named token (admin only).
func (c *Client) RevokeToken(ctx context.Context, name string) (Token, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(name)+"/revoke", nil, nil, -1)
	if err != nil {
		return Token{}, err
	}
	defer resp.Body.Close()
	var t Token
	err = json.NewDecoder(io.LimitReader(resp.Body, MaxResponse)).Decode(&t)
	return t, err
}

// AuditPackage downloads the audit package of a recorded release (a zip)
// into w, up to max bytes. The caller verifies it: nothing in it is
// trusted until checked with the log key.
func (c *Client) AuditPackage(ctx context.Context, version string, w io.Writer, max int64) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/releases/"+url.PathEscape(version)+"/audit-package", nil, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	switch {
	case err != nil:
		return fmt.Errorf("reading the audit package of %s from the node: %w", version, err)
	case n > max:
		return fmt.Errorf("the node's audit package of %s is over %d bytes", version, max)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		return fmt.Errorf("the node sent %d of %d bytes of the audit package of %s", n, resp.ContentLength, version)
	}
	return nil
}
