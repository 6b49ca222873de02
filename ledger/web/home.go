package web

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// releaseSummary is one row of the home page's release table.
type releaseSummary struct {
	Version  string
	Index    uint64
	Signer   signing.Signer
	Meaning  string
	SignedAt string
	LoggedAt string
}

func (p *Pages) home(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rels, err := p.opts.Registry.Releases(ctx, "")
	if err != nil {
		return err
	}
	total := len(rels)
	if len(rels) > p.opts.RecentReleases {
		rels = rels[len(rels)-p.opts.RecentReleases:]
	}
	recent := make([]releaseSummary, 0, len(rels))
	for i := len(rels) - 1; i >= 0; i-- {
		s, err := p.summarise(ctx, rels[i])
		if err != nil {
			return err
		}
		recent = append(recent, s)
	}
	cp, size := p.opts.Log.Checkpoint()
	data := struct {
		Checkpoint string
		TreeSize   uint64
		Releases   []releaseSummary
		Total      int
		HasKey     bool
	}{string(cp), size, recent, total, p.opts.PublicKey != ""}
	return p.render(w, http.StatusOK, "home", p.opts.Log.Origin(), data)
}

// summarise reads a recorded release's manifest for who signed it.
func (p *Pages) summarise(ctx context.Context, rel release.RecordedRelease) (releaseSummary, error) {
	pred, err := p.predicate(ctx, rel)
	if err != nil {
		return releaseSummary{}, err
	}
	return releaseSummary{Version: rel.Release.Version, Index: rel.Index, Signer: pred.Signer, Meaning: pred.Meaning,
		SignedAt: pred.SignedAt, LoggedAt: rel.LoggedAt}, nil
}

// predicate reads and parses the manifest a release entry names. The
// manifest's digest is the one the entry states, so this is the signed
// statement the log recorded; its signature was checked when recording.
func (p *Pages) predicate(ctx context.Context, rel release.RecordedRelease) (signing.Predicate, error) {
	b, err := p.readBlob(ctx, rel.Release.Manifest, signing.MaxManifestSize)
	if err != nil {
		return signing.Predicate{}, fmt.Errorf("reading the manifest of %s: %w", rel.Release.Version, err)
	}
	m, err := signing.ParseManifest(b)
	if err != nil {
		return signing.Predicate{}, fmt.Errorf("the manifest of %s: %w", rel.Release.Version, err)
	}
	return m.Predicate(), nil
}
