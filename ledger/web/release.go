package web

import (
	"errors"
	"net/http"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/auditpkg"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// maxListing bounds the bundle listing a page reads: about a million files.
const maxListing = 256 << 20

// fileRow is one file of a release's bundle.
type fileRow struct {
	Path   string
	Size   int64 // -1 when the blob store lacks the file
	Digest cas.Digest
}

// traceLine is one line of the traceability table: a requirement and one
// of its stamps (Stamp nil: none). Span is the number of lines of the
// requirement on its first line, 0 on the others.
type traceLine struct {
	UID          string
	State        string
	ReviewedHash string
	Span         int
	Stamp        *release.StampedEntry
}

// CheckData is what the release page's script verifies in the browser:
// the release entry's receipt and what the page claims it is. It is
// embedded as JSON; byte strings are base64.
type CheckData struct {
	Version     string   `json:"version"`
	Manifest    string   `json:"manifest"` // the manifest digest the page shows
	Origin      string   `json:"origin"`
	Index       uint64   `json:"index"`
	TreeSize    uint64   `json:"tree_size"`
	Entry       []byte   `json:"entry"`
	EntryDigest string   `json:"entry_digest"`
	Hashes      [][]byte `json:"hashes"`
	Checkpoint  string   `json:"checkpoint"`
}

// releasePage is the data of a release page.
type releasePage struct {
	Version      string
	Index        uint64
	LoggedAt     string
	LoggedBy     string
	EntryDigest  string
	Predicate    signing.Predicate
	Bundle       cas.Digest
	Manifest     cas.Digest
	Previous     *cas.Digest
	Files        []fileRow
	Trace        []traceLine
	Requirements int
	Checkpoint   string
	TreeSize     uint64
	Check        CheckData
	Names        auditpkg.Names
}

func (p *Pages) release(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	version := r.PathValue("version")
	if err := ledger.ValidateVersion(version); err != nil {
		return badRequest("%v", err)
	}
	src, err := p.opts.Registry.Source(ctx)
	if err != nil {
		return err
	}
	rel, rows, err := src.TraceRelease(version)
	if errors.Is(err, release.ErrUnknownRelease) {
		return notFound("no release %s is recorded in this log", version)
	}
	if err != nil {
		return err
	}
	pred, err := p.predicate(ctx, rel)
	if err != nil {
		return err
	}
	lb, err := src.Blob(rel.Release.Bundle, maxListing)
	if err != nil {
		return err
	}
	listing, err := evidence.ParseListing(lb)
	if err != nil {
		return err
	}
	files := make([]fileRow, len(listing.Files))
	for i, f := range listing.Files {
		files[i] = fileRow{Path: f.Path, Size: -1, Digest: f.Digest}
		info, err := p.opts.Blobs.Stat(ctx, f.Digest)
		switch {
		case err == nil:
			files[i].Size = info.Size
		case !errors.Is(err, cas.ErrNotFound):
			return err
		}
	}
	rc, err := p.opts.Log.Receipt(ctx, rel.Index)
	if err != nil {
		return err
	}
	ent, err := ledger.ParseEntry(rc.Entry)
	if err != nil {
		return err
	}
	var trace []traceLine
	for _, row := range rows {
		line := traceLine{UID: row.UID, State: row.State, ReviewedHash: row.ReviewedHash, Span: max(1, len(row.Stamps))}
		if len(row.Stamps) == 0 {
			trace = append(trace, line)
		}
		for i := range row.Stamps {
			line.Stamp = &row.Stamps[i]
			trace = append(trace, line)
			line.Span = 0
		}
	}
	data := releasePage{
		Version: version, Index: rel.Index, LoggedAt: rel.LoggedAt, LoggedBy: ent.LoggedBy, EntryDigest: rc.EntryDigest,
		Predicate: pred, Bundle: rel.Release.Bundle, Manifest: rel.Release.Manifest, Previous: rel.Release.Previous,
		Files: files, Trace: trace, Requirements: len(rows), Checkpoint: rc.Checkpoint, TreeSize: rc.Inclusion.TreeSize,
		Check: CheckData{Version: version, Manifest: rel.Release.Manifest.String(), Origin: rc.Origin, Index: rc.Index,
			TreeSize: rc.Inclusion.TreeSize, Entry: rc.Entry, EntryDigest: rc.EntryDigest, Hashes: rc.Inclusion.Hashes, Checkpoint: rc.Checkpoint},
		Names: auditpkg.NamesFor(version),
	}
	return p.render(w, http.StatusOK, "release", "Release "+version, data)
}
