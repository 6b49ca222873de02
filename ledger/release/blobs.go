package release

import (
	"context"
	"fmt"
	"slices"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// maxListingSize bounds the listing blob Blobs reads.
const maxListingSize = 64 << 20

// Blobs are the blobs a recorded release keeps in the blob store: what an
// auditor needs to check it, and what a legal hold must keep.
type Blobs struct {
	Version  string
	Listing  cas.Digest   // the bundle's listing, whose digest is the bundle's
	Files    []cas.Digest // the bundle's files, each distinct content once, sorted
	Manifest cas.Digest   // the signed manifest
	// StampList is the signed stamp list, or nil when the manifest signs
	// none or it was not stored when the release was recorded.
	StampList *cas.Digest
}

// All returns every digest of b, each once, sorted.
func (b Blobs) All() []cas.Digest {
	all := append([]cas.Digest{b.Listing, b.Manifest}, b.Files...)
	if b.StampList != nil {
		all = append(all, *b.StampList)
	}
	slices.SortFunc(all, func(x, y cas.Digest) int { return slices.Compare(x[:], y[:]) })
	return slices.Compact(all)
}

// ReleaseBlobs finds the blobs of the release recorded as version: its
// listing and manifest from the release entry, the files from the listing,
// and the stamp list the manifest signs if it is stored. It reads the
// listing and the manifest (verified); it fails with ErrUnknownRelease if the
// log holds no such release, and with an error wrapping cas.ErrNotFound if
// the listing or manifest is missing.
func (r *Registry) ReleaseBlobs(ctx context.Context, version string) (Blobs, error) {
	rels, err := r.Releases(ctx, version)
	if err != nil {
		return Blobs{}, err
	}
	if len(rels) == 0 {
		return Blobs{}, fmt.Errorf("%w: %s", ErrUnknownRelease, version)
	}
	rel := rels[0].Release
	b := Blobs{Version: version, Listing: rel.Bundle, Manifest: rel.Manifest}
	lb, err := r.getBlob(ctx, rel.Bundle, maxListingSize)
	if err != nil {
		return Blobs{}, fmt.Errorf("reading the listing of %s: %w", version, err)
	}
	listing, err := evidence.ParseListing(lb)
	if err != nil {
		return Blobs{}, fmt.Errorf("the listing of %s: %w", version, err)
	}
	for _, f := range listing.Files {
		b.Files = append(b.Files, f.Digest)
	}
	slices.SortFunc(b.Files, func(x, y cas.Digest) int { return slices.Compare(x[:], y[:]) })
	b.Files = slices.Compact(b.Files)
	mb, err := r.getBlob(ctx, rel.Manifest, signing.MaxManifestSize)
	if err != nil {
		return Blobs{}, fmt.Errorf("reading the manifest of %s: %w", version, err)
	}
	m, err := signing.ParseManifest(mb)
	if err != nil {
		return Blobs{}, fmt.Errorf("the manifest of %s: %w", version, err)
	}
	if d := m.Predicate().StampList(); d != nil {
		ok, err := r.blobs.Has(ctx, *d)
		if err != nil {
			return Blobs{}, fmt.Errorf("looking up the stamp list of %s: %w", version, err)
		}
		if ok {
			b.StampList = d
		}
	}
	return b, nil
}
