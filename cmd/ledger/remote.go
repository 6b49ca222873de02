package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/proofs"
)

// nodeFlags name a node for commands that work locally or remotely.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "node", EnvVars: []string{"LEDGER_NODE"}, Usage: "work against the node at `URL` instead of a data directory"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"LEDGER_TOKEN"}, Usage: "the node token, when its reads need one"},
	}
}

// logReader is what the read commands need, from a local ledger or a node.
type logReader interface {
	// Checkpoint returns the latest signed checkpoint, CheckpointAt the
	// one signed at size.
	Checkpoint(ctx context.Context) ([]byte, error)
	CheckpointAt(ctx context.Context, size uint64) ([]byte, error)
	// ProveInclusion and ProveConsistency take 0 for the current size.
	ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error)
	ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error)
	// Entries returns up to limit (0: all) entries matching q from start,
	// with their indexes, in log order.
	Entries(ctx context.Context, q ledger.Query, start uint64, limit int) ([]client.Entry, error)
}

// localReader reads a ledger opened from its data directory.
type localReader struct{ l *ledger.Ledger }

func (r localReader) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, _ := r.l.Log.Checkpoint()
	return cp, nil
}

func (r localReader) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	return r.l.Log.CheckpointAt(ctx, size)
}

func (r localReader) ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error) {
	return r.l.Log.ProveInclusion(ctx, index, size)
}

func (r localReader) ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error) {
	return r.l.Log.ProveConsistency(ctx, from, to)
}

func (r localReader) Entries(ctx context.Context, q ledger.Query, start uint64, limit int) ([]client.Entry, error) {
	idx, err := r.l.Log.Search(ctx, q, start, limit)
	if err != nil {
		return nil, err
	}
	out := make([]client.Entry, len(idx))
	for k, i := range idx {
		b, err := r.l.Log.Entry(ctx, i)
		if err != nil {
			return nil, err
		}
		out[k] = client.Entry{Index: i, Entry: b}
	}
	return out, nil
}

// remoteReader is a node.
type remoteReader struct{ *client.Client }

func (r remoteReader) Entries(ctx context.Context, q ledger.Query, start uint64, limit int) ([]client.Entry, error) {
	return r.Search(ctx, client.Query{Digest: q.Digest, Kind: string(q.Kind), UID: q.UID, Release: q.Release, KeyID: q.KeyID, ReviewedHash: q.ReviewedHash}, start, limit)
}

// reader returns the node named by --node (LEDGER_NODE), or else the
// local ledger of --data (LEDGER_DATA), and a function that releases it.
func (e *env) reader(c *cli.Context) (logReader, func(), error) {
	if u := c.String("node"); u != "" {
		cl, err := nodeClient(c)
		if err != nil {
			return nil, nil, err
		}
		return remoteReader{cl}, func() {}, nil
	}
	l, err := e.open(c)
	if err != nil {
		return nil, nil, err
	}
	return localReader{l}, func() { l.Close() }, nil
}

// store is what put, get and append need, from a local ledger or a node.
type store interface {
	PutBlob(ctx context.Context, r io.Reader, size int64, expect *cas.Digest) (cas.Digest, int64, error)
	// GetBlob writes the blob to w, verifying it as it streams.
	GetBlob(ctx context.Context, d cas.Digest, w io.Writer) error
	Append(ctx context.Context, c ledger.Claim, by string) (proofs.Receipt, error)
}

type localStore struct{ l *ledger.Ledger }

func (s localStore) PutBlob(ctx context.Context, r io.Reader, _ int64, expect *cas.Digest) (cas.Digest, int64, error) {
	info, err := s.l.Blobs.Put(ctx, r, expect)
	return info.Digest, info.Size, err
}

func (s localStore) GetBlob(ctx context.Context, d cas.Digest, w io.Writer) error {
	_, err := cas.Get(ctx, s.l.Blobs, d, w)
	return err
}

func (s localStore) Append(ctx context.Context, c ledger.Claim, by string) (proofs.Receipt, error) {
	return s.l.Log.Append(ctx, c, by)
}

// remoteStore is a node; appends are logged under the token's name.
type remoteStore struct{ c *client.Client }

func (s remoteStore) PutBlob(ctx context.Context, r io.Reader, size int64, expect *cas.Digest) (cas.Digest, int64, error) {
	cr := &countReader{r: r}
	d, err := s.c.PutBlob(ctx, cr, size, expect)
	return d, cr.n.Load(), err
}

func (s remoteStore) GetBlob(ctx context.Context, d cas.Digest, w io.Writer) error {
	return s.c.GetBlob(ctx, d, w)
}

func (s remoteStore) Append(ctx context.Context, c ledger.Claim, _ string) (proofs.Receipt, error) {
	return s.c.Append(ctx, string(c.Kind), c.Subject)
}

// countReader counts the bytes read. The transport reads it on a
// goroutine of its own, which may still be reading an earlier try when a
// retry starts or the answer comes.
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ReadAt and Seek pass through to a file (see resendable), so that the
// client can send it again after a 503 from a failing-over node; n is
// then the furthest byte read.
func (c *countReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.(io.ReaderAt).ReadAt(p, off)
	for end := off + int64(n); ; {
		if cur := c.n.Load(); cur >= end || c.n.CompareAndSwap(cur, end) {
			break
		}
	}
	return n, err
}

func (c *countReader) Seek(offset int64, whence int) (int64, error) {
	return resendable(c.r, offset, whence)
}

// resendable seeks r if it can also be read at an offset, as a file can;
// otherwise it fails, and the client sends r once, as a stream.
func resendable(r io.Reader, offset int64, whence int) (int64, error) {
	s, ok := r.(io.Seeker)
	if _, at := r.(io.ReaderAt); !ok || !at {
		return 0, errors.New("not a file: it can be sent once only")
	}
	return s.Seek(offset, whence)
}

// store returns the node of --node, or else the local ledger, and a
// function that releases it. Over a node, --as is refused: the node
// records the token's name.
func (e *env) store(c *cli.Context) (store, func(), error) {
	if u := c.String("node"); u != "" {
		if c.IsSet("as") {
			return nil, nil, usagef("--as names the appender locally; a node records the name of the token (LEDGER_TOKEN)")
		}
		cl, err := nodeClient(c)
		if err != nil {
			return nil, nil, err
		}
		return remoteStore{cl}, func() {}, nil
	}
	l, err := e.open(c)
	if err != nil {
		return nil, nil, err
	}
	return localStore{l}, func() { l.Close() }, nil
}

// nodeClient returns the client for --node (LEDGER_NODE) with --token
// (LEDGER_TOKEN); a malformed URL is a usage error.
func nodeClient(c *cli.Context) (*client.Client, error) {
	cl, err := client.New(c.String("node"), c.String("token"))
	if err != nil {
		return nil, usageError{err}
	}
	cl.Waiting = func(status int, reason string, wait time.Duration) {
		fmt.Fprintf(c.App.ErrWriter, "ledger: the node answered %d (%s); asking again in %v\n", status, reason, wait)
	}
	return cl, nil
}
