// Package cas is a content-addressed blob store: every blob is named by the SHA-256 digest of
// its content, written in the text form "sha256:<64 lowercase hex digits>".
//
// A Store promises that:
//
//   - blobs are immutable and never deleted: once Put reports success, the blob under that digest
//     stays readable, with exactly that content, for the life of the store;
//   - Put streams in constant memory whatever the size, hashes while writing and, when the caller
//     states the digest it expects, refuses different content and stores nothing;
//   - a failed Put (mismatch, reader error, cancelled context) leaves no blob behind;
//   - reads verify: the reader from Open checks the content against its digest while streaming and
//     reports corruption as an error wrapping ErrCorrupt, never as a silent short read.
//
// A Store does not promise confidentiality (blobs are stored as given, unencrypted), access
// control, or any relation between blobs; knowing which blobs matter is the caller's business.
//
// Badger is the embedded implementation. It splits blobs into chunks (DefaultChunkSize) that are
// themselves content-addressed, so identical chunks are stored once. The conformance suite in
// package castest checks any implementation of Store.
package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrNotFound is returned (wrapped) when a blob is not in the store.
var ErrNotFound = errors.New("blob not found")

// ErrCorrupt is returned (wrapped, usually by a *CorruptError) when stored data does not hash to
// what it should or cannot be decoded. It means the store itself is damaged.
var ErrCorrupt = errors.New("stored data is corrupt")

// ErrUnavailable is returned (wrapped) when a store kept elsewhere (an
// object store) cannot be reached or answers that it is unavailable: the
// operation did nothing, and may be retried once the store is back.
var ErrUnavailable = errors.New("blob store unavailable")

// ErrDigestMismatch is returned (wrapped, by a *MismatchError) when content given to Put does not
// hash to the digest the caller said to expect.
var ErrDigestMismatch = errors.New("content does not match expected digest")

// CorruptError describes stored data that failed verification. It matches ErrCorrupt with errors.Is.
type CorruptError struct {
	Digest Digest // the blob whose data is corrupt
	Chunk  int    // index of the corrupt chunk within the blob, or -1 when no one chunk is to blame
	Detail string // what is wrong
}

// Error describes the corruption, naming the blob and, if known, the chunk.
func (e *CorruptError) Error() string {
	if e.Chunk >= 0 {
		return fmt.Sprintf("blob %s is corrupt: chunk %d: %s", e.Digest, e.Chunk, e.Detail)
	}
	return fmt.Sprintf("blob %s is corrupt: %s", e.Digest, e.Detail)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// MismatchError reports that content given to Put hashed to Actual rather than the Expected
// digest. It matches ErrDigestMismatch with errors.Is.
type MismatchError struct {
	Expected Digest // the digest the caller stated
	Actual   Digest // the digest of the content received
	Size     int64  // the size of the content received
}

// Error names both digests and the size of the content received.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("content of %d bytes has digest %s, want %s", e.Size, e.Actual, e.Expected)
}

// Is reports whether target is ErrDigestMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrDigestMismatch }

// Info describes a stored blob.
type Info struct {
	Digest Digest `json:"digest"` // digest of the content
	Size   int64  `json:"size"`   // length of the content in bytes
	Chunks int    `json:"chunks"` // number of chunks the store keeps it in (0 for the empty blob; 1 when unchunked)
}

// Store is a content-addressed store of immutable blobs. Blobs are never deleted or overwritten.
// Implementations are safe for concurrent use.
type Store interface {
	// Put reads r to the end and stores its content as a blob, in memory independent of the
	// content's size, hashing as it goes. If expected is not nil and the content hashes to
	// something else, Put stores nothing and returns a *MismatchError. If r fails or ctx is
	// done before the content is stored, Put stores nothing and returns an error wrapping the
	// cause. Putting a blob that is already stored succeeds without change and returns its Info.
	// Success means the blob is durable.
	Put(ctx context.Context, r io.Reader, expected *Digest) (Info, error)

	// Open returns a reader of the blob with digest d and its Info. The reader verifies the
	// content while streaming: data that does not hash as it should makes Read return an error
	// wrapping ErrCorrupt, never io.EOF, and io.EOF comes only after the whole content verified.
	// Open returns an error wrapping ErrNotFound if the blob is absent. The caller must Close the
	// reader; closing releases resources and ends any work the reader started. ctx bounds the
	// reading as well as the opening.
	Open(ctx context.Context, d Digest) (io.ReadCloser, Info, error)

	// Has reports whether the blob with digest d is stored.
	Has(ctx context.Context, d Digest) (bool, error)

	// Stat returns the Info of the blob with digest d, or an error wrapping ErrNotFound if it
	// is absent. It does not read or verify the content.
	Stat(ctx context.Context, d Digest) (Info, error)
}

// Get copies the blob with digest d from s to w, verifying it on the way, and returns its Info.
// On corruption part of the content may already have been written to w; the error wraps
// ErrCorrupt. An absent blob gives an error wrapping ErrNotFound and writes nothing.
func Get(ctx context.Context, s Store, d Digest, w io.Writer) (Info, error) {
	rc, info, err := s.Open(ctx, d)
	if err != nil {
		return Info{}, err
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return info, fmt.Errorf("copying blob %s: %w", d, err)
	}
	if err := rc.Close(); err != nil {
		return info, fmt.Errorf("closing blob %s: %w", d, err)
	}
	return info, nil
}
