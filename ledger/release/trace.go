package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// RecordedRelease is a release entry in the log.
type RecordedRelease struct {
	Index    uint64         `json:"index"`
	Release  ledger.Release `json:"release"`
	LoggedAt string         `json:"logged_at"`
}

// Releases returns every release entry, in log order; version, if set,
// selects one.
func (r *Registry) Releases(ctx context.Context, version string) ([]RecordedRelease, error) {
	idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindRelease, Release: version}, 0, 0)
	if err != nil {
		return nil, err
	}
	var out []RecordedRelease
	for _, i := range idx {
		e, err := r.entry(ctx, i)
		if err != nil {
			return nil, err
		}
		var rel ledger.Release
		if err := e.DecodeSubject(&rel); err != nil {
			return nil, err
		}
		if version == "" || rel.Version == version {
			out = append(out, RecordedRelease{Index: i, Release: rel, LoggedAt: e.LoggedAt})
		}
	}
	return out, nil
}

// getBlob reads a whole blob of at most max bytes, verified.
func (r *Registry) getBlob(ctx context.Context, d cas.Digest, max int64) ([]byte, error) {
	info, err := r.blobs.Stat(ctx, d)
	if err != nil {
		return nil, err
	}
	if info.Size > max {
		return nil, fmt.Errorf("blob %s is %d bytes, over %d", d, info.Size, max)
	}
	var b bytes.Buffer
	if _, err := cas.Get(ctx, r.blobs, d, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// TraceRow is one requirement's chain: its stamps and the releases whose
// evidence lists it.
type TraceRow struct {
	UID          string `json:"uid"`
	State        string `json:"state,omitempty"`
	ReviewedHash string `json:"reviewed_hash,omitempty"` // as the release's index.json states it
	// Document is the .sdoc file the requirement is in, as its current
	// stamp records it: the last of Stamps, so that the document and the
	// approval shown beside it come from one stamp.
	Document string            `json:"document,omitempty"`
	Stamps   []StampedEntry    `json:"stamps"`
	Releases []RecordedRelease `json:"releases"`
}

// TraceSource is what tracing reads: the log's release and stamp entries
// and the blob store, from a local ledger or through a node.
type TraceSource struct {
	Releases []RecordedRelease                       // every release entry, in log order
	Stamps   map[string][]StampedEntry               // StampsByUID of every stamp entry
	Blob     func(cas.Digest, int64) ([]byte, error) // a whole blob of at most the size given
}

// Source gathers the registry's log into a TraceSource.
func (r *Registry) Source(ctx context.Context) (TraceSource, error) {
	rels, err := r.Releases(ctx, "")
	if err != nil {
		return TraceSource{}, err
	}
	all, err := r.allStamps(ctx)
	if err != nil {
		return TraceSource{}, err
	}
	return TraceSource{Releases: rels, Stamps: all, Blob: func(d cas.Digest, max int64) ([]byte, error) { return r.getBlob(ctx, d, max) }}, nil
}

// Index reads the index.json of a recorded release's bundle through its
// listing. A bundle without one gives an empty index.
func (src TraceSource) Index(rel ledger.Release) (evidence.Index, error) {
	lb, err := src.Blob(rel.Bundle, 256<<20)
	if err != nil {
		return evidence.Index{}, fmt.Errorf("reading the listing of %s: %w", rel.Version, err)
	}
	l, err := evidence.ParseListing(lb)
	if err != nil {
		return evidence.Index{}, fmt.Errorf("the listing of %s: %w", rel.Version, err)
	}
	f, ok := l.Lookup(IndexFile)
	if !ok {
		return evidence.Index{}, nil
	}
	b, err := src.Blob(f.Digest, evidence.MaxIndexSize)
	if err != nil {
		return evidence.Index{}, fmt.Errorf("reading index.json of %s: %w", rel.Version, err)
	}
	return evidence.ParseIndex(b)
}

// Trace returns the chain for one UID: every stamp (PR, commit, approver,
// time, log index) and every recorded release whose index.json lists it.
// The row's Document is the latest stamp's: where the requirement is now.
func (src TraceSource) Trace(uid string) (TraceRow, error) {
	stamps := src.Stamps[uid]
	row := TraceRow{UID: uid, Stamps: append([]StampedEntry{}, stamps...)} // [] in JSON, as in TraceRelease
	if n := len(stamps); n > 0 {
		row.Document = stamps[n-1].Stamp.Document
	}
	for _, rel := range src.Releases {
		idx, err := src.Index(rel.Release)
		if err != nil {
			return TraceRow{}, err
		}
		for _, req := range idx.Requirements {
			if req.UID == uid {
				row.Releases = append(row.Releases, rel)
				row.State = req.State
				break
			}
		}
	}
	if len(stamps) == 0 && len(row.Releases) == 0 {
		return TraceRow{}, fmt.Errorf("%w: no stamp and no release in the log mentions requirement %s", ledger.ErrNotFound, uid)
	}
	return row, nil
}

// TraceRelease returns the traceability table of a recorded release: each
// regulated UID of its index.json with the stamp that stood behind it.
// That is the stamp the signed stamp list names, when the release was
// recorded with it (release sign writes it, and record stores it); for a
// release without one, the stamps logged before the release entry whose
// REVIEWED_HASH is the one the index states (every stamp of the UID
// before the release when the index states none). The last of a row's
// stamps is the one the release stood on, and gives the row's Document.
func (src TraceSource) TraceRelease(version string) (RecordedRelease, []TraceRow, error) {
	var rel *RecordedRelease
	for i := range src.Releases {
		if src.Releases[i].Release.Version == version {
			rel = &src.Releases[i]
			break
		}
	}
	if rel == nil {
		return RecordedRelease{}, nil, fmt.Errorf("%w: %s", ErrUnknownRelease, version)
	}
	idx, err := src.Index(rel.Release)
	if err != nil {
		return *rel, nil, err
	}
	signed, err := src.signedStamps(rel.Release)
	if err != nil {
		return *rel, nil, err
	}
	var rows []TraceRow
	for _, req := range idx.Regulated() {
		row := TraceRow{UID: req.UID, State: req.State, ReviewedHash: req.ReviewedHash, Stamps: []StampedEntry{}, Releases: []RecordedRelease{*rel}}
		for _, s := range src.Stamps[req.UID] {
			switch {
			case signed != nil:
				if l, ok := signed[req.UID]; ok && l.Index == s.Index {
					row.Stamps = append(row.Stamps, s)
					row.ReviewedHash = l.ReviewedHash
				}
			case s.Index < rel.Index && (req.ReviewedHash == "" || s.Stamp.ReviewedHash == req.ReviewedHash):
				row.Stamps = append(row.Stamps, s)
			}
		}
		if n := len(row.Stamps); n > 0 {
			row.Document = row.Stamps[n-1].Stamp.Document
		}
		rows = append(rows, row)
	}
	return *rel, rows, nil
}

// signedStamps returns the signed stamp list of a release by UID, or nil
// for a release recorded without one.
func (src TraceSource) signedStamps(rel ledger.Release) (map[string]StampLine, error) {
	mb, err := src.Blob(rel.Manifest, signing.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", rel.Version, err)
	}
	m, err := signing.ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("the manifest of %s: %w", rel.Version, err)
	}
	d := m.Predicate().StampList()
	if d == nil {
		return nil, nil
	}
	b, err := src.Blob(*d, 64<<20)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, nil // recorded before stamp lists were stored
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stamp list of %s: %w", rel.Version, err)
	}
	lines, err := ParseStampList(b)
	if err != nil {
		return nil, fmt.Errorf("the stamp list of %s: %w", rel.Version, err)
	}
	out := make(map[string]StampLine, len(lines))
	for _, l := range lines {
		out[l.UID] = l
	}
	return out, nil
}

// Trace is TraceSource.Trace over the registry's log.
func (r *Registry) Trace(ctx context.Context, uid string) (TraceRow, error) {
	src, err := r.Source(ctx)
	if err != nil {
		return TraceRow{}, err
	}
	return src.Trace(uid)
}

// TraceRelease is TraceSource.TraceRelease over the registry's log.
func (r *Registry) TraceRelease(ctx context.Context, version string) (RecordedRelease, []TraceRow, error) {
	src, err := r.Source(ctx)
	if err != nil {
		return RecordedRelease{}, nil, err
	}
	return src.TraceRelease(version)
}
