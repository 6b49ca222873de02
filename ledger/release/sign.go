package release

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// IndexFile is the name of the bundle's requirement index.
const IndexFile = "index.json"

// SignRequest is what a signer asks to sign.
type SignRequest struct {
	Bundle  string // path of the bundle
	Version string
	Meaning string
	Signer  signing.Signer // name, email and key id
	// Previous, if set, is the previous release's manifest file; its
	// digest goes into the predicate, chaining the releases.
	Previous []byte
	Now      time.Time // signing time; zero means time.Now
	Progress func(done, total int64)
}

// Prepared is a release ready to be signed: everything the signer must see
// before approving.
type Prepared struct {
	Summary   evidence.Summary
	Predicate signing.Predicate
}

// Prepare hashes the bundle, checks it against its own SHA256SUMS, counts
// the regulated requirements in its index.json, and builds the predicate.
// It refuses an unknown meaning, a bad version, a bundle whose SHA256SUMS
// disagrees with its files, and a previous manifest that does not parse or
// is for the same or a later version.
func Prepare(ctx context.Context, req SignRequest) (Prepared, error) {
	if err := signing.CheckMeaning(req.Meaning); err != nil {
		return Prepared{}, err
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := signing.Predicate{
		Version:  req.Version,
		Meaning:  req.Meaning,
		Signer:   req.Signer,
		SignedAt: now.UTC().Format(signing.TimeFormat),
	}
	if req.Previous != nil {
		prev, err := signing.ParseManifest(req.Previous)
		if err != nil {
			return Prepared{}, fmt.Errorf("the previous release's manifest: %w", err)
		}
		if prev.Predicate().Version == req.Version {
			return Prepared{}, fmt.Errorf("the previous release's manifest is for %s, the version being signed", req.Version)
		}
		d := cas.Sum(req.Previous)
		p.PreviousRelease = &d
	}
	sum, err := evidence.Hash(ctx, req.Bundle, evidence.Options{Progress: req.Progress})
	if err != nil {
		return Prepared{}, err
	}
	bad, err := sumsMismatches(sum)
	if err != nil {
		return Prepared{}, fmt.Errorf("%w: %v", evidence.ErrInvalidBundle, err)
	}
	if len(bad) > 0 {
		return Prepared{}, fmt.Errorf("%w: %s disagrees with the files: %s", evidence.ErrInvalidBundle, evidence.SumsFile, strings.Join(bad, "; "))
	}
	p.Bundle = signing.BundleInfo{Files: int64(sum.Files), Size: sum.Size}
	if _, ok := sum.Listing.Lookup(IndexFile); ok {
		b, err := evidence.ReadFile(ctx, req.Bundle, IndexFile, 64<<20)
		if err != nil {
			return Prepared{}, err
		}
		if f, _ := sum.Listing.Lookup(IndexFile); cas.Sum(b) != f.Digest {
			return Prepared{}, fmt.Errorf("%w: %s changed while the bundle was read", evidence.ErrInvalidBundle, IndexFile)
		}
		ev, err := countRequirements(b)
		if err != nil {
			return Prepared{}, err
		}
		p.Evidence = &ev
	}
	if err := p.Check(); err != nil {
		return Prepared{}, fmt.Errorf("%w: %v", signing.ErrInvalidManifest, err)
	}
	return Prepared{Summary: sum, Predicate: p}, nil
}

// Sign signs the prepared release with key, which must be the key the
// predicate names.
func (p Prepared) Sign(ctx context.Context, key *signing.PrivateKey) ([]byte, error) {
	return signing.Sign(ctx, key, p.Summary.Digest, p.Predicate)
}

// countRequirements reads the counts of the predicate's evidence block from
// index.json: regulated requirements and how many are reviewed. Stamps are
// counted by the release gate, which needs the log.
func countRequirements(b []byte) (signing.Evidence, error) {
	var idx struct {
		Requirements []struct {
			UID       string `json:"uid"`
			State     string `json:"state"`
			Regulated *bool  `json:"regulated"`
		} `json:"requirements"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return signing.Evidence{}, fmt.Errorf("%w: %s: %v", evidence.ErrInvalidBundle, IndexFile, err)
	}
	var ev signing.Evidence
	for i, r := range idx.Requirements {
		if r.UID == "" {
			return signing.Evidence{}, fmt.Errorf("%w: %s: requirement %d has no uid", evidence.ErrInvalidBundle, IndexFile, i+1)
		}
		if r.Regulated != nil && !*r.Regulated {
			continue
		}
		ev.Requirements++
		if r.State == "reviewed" {
			ev.Reviewed++
		}
	}
	return ev, nil
}
