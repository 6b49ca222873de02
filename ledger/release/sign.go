package release

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// IndexFile is the name of the bundle's requirement index.
const IndexFile = evidence.IndexFile

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
	// Gate, if set, runs the release gate over the bundle's index.json;
	// a failing gate stops the signing, and a passing one fills the
	// predicate's evidence block, stamps included. Without it the block
	// holds the index's counts only.
	Gate func(evidence.Index) (GateResult, error)
}

// ErrGateFailed is returned by Prepare when the release gate finds
// requirements that block the release.
var ErrGateFailed = errors.New("the release gate failed")

// Prepared is a release ready to be signed: everything the signer must see
// before approving.
type Prepared struct {
	Summary   evidence.Summary
	Predicate signing.Predicate
	Gate      *GateResult // when the gate ran
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
		return Prepared{}, fmt.Errorf("%w: %s", evidence.ErrSumsMismatch, strings.Join(bad, "; "))
	}
	p.Bundle = signing.BundleInfo{Files: int64(sum.Files), Size: sum.Size}
	if _, ok := sum.Listing.Lookup(IndexFile); ok {
		if sum.IndexTooLarge {
			return Prepared{}, fmt.Errorf("%w: %s is over %d bytes", evidence.ErrInvalidBundle, IndexFile, evidence.MaxIndexSize)
		}
		b := sum.Index
		idx, err := evidence.ParseIndex(b)
		if err != nil {
			return Prepared{}, fmt.Errorf("%w: %v", evidence.ErrInvalidBundle, err)
		}
		ev := signing.Evidence{}
		for _, r := range idx.Regulated() {
			ev.Requirements++
			if r.State == "reviewed" && !r.Suspect {
				ev.Reviewed++
			}
		}
		if req.Gate != nil {
			g, err := req.Gate(idx)
			if err != nil {
				return Prepared{}, err
			}
			if !g.Passed() {
				return Prepared{Gate: &g}, fmt.Errorf("%w: %d of %d regulated requirements block the release", ErrGateFailed, g.Blocking(), g.Requirements)
			}
			ev.Stamps = g.Stamps
			d := g.StampList
			ev.StampList = &d
			p.Evidence = &ev
			prep := Prepared{Summary: sum, Predicate: p, Gate: &g}
			if err := p.Check(); err != nil {
				return Prepared{}, fmt.Errorf("%w: %v", signing.ErrInvalidManifest, err)
			}
			return prep, nil
		}
		// Without the log, at least the index must show every regulated
		// requirement reviewed and none suspect.
		if ev.Reviewed < ev.Requirements || ev.Requirements == 0 {
			var bad []string
			for _, r := range idx.Regulated() {
				if r.State != "reviewed" || r.Suspect {
					bad = append(bad, r.UID)
				}
			}
			return Prepared{}, fmt.Errorf("%w: %d of %d regulated requirements are not reviewed or are suspect (%s)", ErrGateFailed, len(bad), ev.Requirements, strings.Join(bad, ", "))
		}
		p.Evidence = &ev
	} else if req.Gate != nil {
		return Prepared{}, fmt.Errorf("%w: the bundle has no %s, so the gate has nothing to check", ErrGateFailed, IndexFile)
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
