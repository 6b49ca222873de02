package release

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// MaxClockSkew is how far in the future a manifest's signed_at may be,
// by the ledger's clock, and still be recorded.
const MaxClockSkew = 5 * time.Minute

// RecordOptions tune Record. The zero value is ready to use.
type RecordOptions struct {
	// Progress, if set, is told of bytes hashed and then stored.
	Progress func(stage string, done, total int64)
	// StampList, if set, is the stamp list the release gate matched when
	// the release was signed (release-vX.Y.Z.stamps); it must be the one
	// the manifest signs, and is stored as a blob so that audit packages
	// name exactly those stamps.
	StampList []byte
}

// Recorded is the outcome of Record.
type Recorded struct {
	Manifest  *signing.Manifest
	Bundle    evidence.Summary // its listing is stored under the bundle digest
	Receipt   proofs.Receipt   // of the release entry
	Artefacts int              // artefact entries appended or found
	// Duplicate reports that this exact release was already recorded;
	// nothing new was appended.
	Duplicate bool
}

// Record records a signed release: it checks the manifest against the
// bundle and the log's signer enrolments, stores every bundle file, the
// listing and the manifest as blobs, and appends an artefact entry per
// file, a bundle entry and the release entry, whose receipt it returns.
//
// It refuses, appending nothing, a manifest that does not parse, whose
// signature does not verify with the enrolled key, whose signer is not
// enrolled, is revoked, or was out of its validity window at signing,
// whose name or email differ from the enrolment, that signs another bundle
// (naming the files that differ when the bundle's SHA256SUMS can tell), a
// bundle whose SHA256SUMS disagrees with its files, a version already
// recorded with another manifest, a previous_release that is not a
// recorded release's manifest, and a bundle that changed while it was
// being stored. Recording the same release again appends nothing and
// returns the original receipt marked duplicate, even if the key has been
// revoked since.
func (r *Registry) Record(ctx context.Context, bundle string, manifest []byte, by string, opts RecordOptions) (Recorded, error) {
	progress := func(stage string) func(done, total int64) {
		if opts.Progress == nil {
			return nil
		}
		return func(done, total int64) { opts.Progress(stage, done, total) }
	}
	if opts.StampList != nil {
		if err := CheckStampList(manifest, opts.StampList); err != nil {
			return Recorded{}, err
		}
	}
	return r.record(ctx, manifest, by, func(ctx context.Context) (evidence.Summary, error) {
		return evidence.Hash(ctx, bundle, evidence.Options{Progress: progress("hashing")})
	}, func(ctx context.Context, sum evidence.Summary) error {
		if opts.StampList != nil {
			if _, err := r.putBytes(ctx, opts.StampList); err != nil {
				return fmt.Errorf("storing the stamp list: %w", err)
			}
		}
		return r.storeFiles(ctx, bundle, sum, progress("storing"))
	}, bundle)
}

// CheckStampList checks a stamp list is the one a manifest signs.
func CheckStampList(manifest, list []byte) error {
	m, err := signing.ParseManifest(manifest)
	if err != nil {
		return err
	}
	signed := m.Predicate().StampList()
	switch got := cas.Sum(list); {
	case signed == nil:
		return fmt.Errorf("%w: a stamp list was given, but the manifest records none (it was signed without the release gate)", signing.ErrInvalidManifest)
	case got != *signed:
		return fmt.Errorf("%w: the stamp list hashes to %s, the manifest signs %s; pass the .stamps file written when it was signed", signing.ErrInvalidManifest, got, signed)
	}
	return nil
}

// RecordStored records a signed release whose bundle files are already
// blobs in the store, as a node receives them: listing is the digest of
// the bundle's listing blob (its canonical digest). Every file it names
// must be stored; the checks and the entries are Record's.
func (r *Registry) RecordStored(ctx context.Context, listing cas.Digest, manifest []byte, by string) (Recorded, error) {
	return r.record(ctx, manifest, by, func(ctx context.Context) (evidence.Summary, error) {
		return r.storedSummary(ctx, listing)
	}, nil, listing.String())
}

// storedSummary rebuilds a bundle's summary from its stored listing and
// blobs: sizes from the store, SHA256SUMS and index.json from their blobs.
func (r *Registry) storedSummary(ctx context.Context, listing cas.Digest) (evidence.Summary, error) {
	lb, err := r.getBlob(ctx, listing, 256<<20)
	if err != nil {
		return evidence.Summary{}, fmt.Errorf("reading the listing %s (upload it first): %w", listing, err)
	}
	l, err := evidence.ParseListing(lb)
	if err != nil {
		return evidence.Summary{}, err
	}
	sum := evidence.Summary{Listing: l, Digest: l.Digest(), Files: len(l.Files)}
	for i, f := range l.Files {
		info, err := r.blobs.Stat(ctx, f.Digest)
		if err != nil {
			return evidence.Summary{}, fmt.Errorf("%w: %s (%s) is not stored; upload every bundle file first: %v", evidence.ErrInvalidBundle, f.Path, f.Digest, err)
		}
		l.Files[i].Size = info.Size
		sum.Size += info.Size
		switch f.Path {
		case evidence.SumsFile:
			if info.Size > evidence.MaxSumsSize {
				sum.SumsTooLarge = true
			} else if sum.Sums, err = r.getBlob(ctx, f.Digest, evidence.MaxSumsSize); err != nil {
				return evidence.Summary{}, err
			}
		case evidence.IndexFile:
			if info.Size > evidence.MaxIndexSize {
				sum.IndexTooLarge = true
			} else if sum.Index, err = r.getBlob(ctx, f.Digest, evidence.MaxIndexSize); err != nil {
				return evidence.Summary{}, err
			}
		}
	}
	sum.Listing = l
	return sum, nil
}

// record is Record's flow: hash gives the bundle's summary, store (nil if
// the files are stored already) stores its files; where names the bundle
// in errors.
func (r *Registry) record(ctx context.Context, manifest []byte, by string,
	hash func(context.Context) (evidence.Summary, error), store func(context.Context, evidence.Summary) error, where string) (Recorded, error) {
	m, err := signing.ParseManifest(manifest)
	if err != nil {
		return Recorded{}, err
	}
	p := m.Predicate()
	// A release already recorded was checked when it was; recording it
	// again must give its receipt even if the key was revoked since.
	prior, found, err := r.findRelease(ctx, m)
	if err != nil {
		return Recorded{}, err
	}
	if !found {
		if err := r.checkSigner(ctx, m); err != nil {
			return Recorded{}, err
		}
	}
	sum, err := hash(ctx)
	if err != nil {
		return Recorded{}, err
	}
	if err := CheckBundle(m, sum, where); err != nil {
		return Recorded{}, err
	}
	if found {
		// Same manifest, same bundle (checked above): nothing to append.
		rc, err := r.log.Receipt(ctx, prior)
		if err != nil {
			return Recorded{}, err
		}
		rc.Duplicate = true
		return Recorded{Manifest: m, Bundle: sum, Receipt: rc, Artefacts: sum.Files, Duplicate: true}, nil
	}
	if err := r.checkVersion(ctx, m); err != nil {
		return Recorded{}, err
	}

	// Store the blobs; none of this is in the log yet, and a refusal
	// from here on leaves only unreferenced, content-addressed blobs.
	if _, err := r.putBytes(ctx, sum.Listing.Bytes()); err != nil {
		return Recorded{}, fmt.Errorf("storing the listing: %w", err)
	}
	md, err := r.putBytes(ctx, manifest)
	if err != nil {
		return Recorded{}, fmt.Errorf("storing the manifest: %w", err)
	}
	if store != nil {
		if err := store(ctx, sum); err != nil {
			return Recorded{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Check again under the lock: another record or a revocation may
	// have been appended meanwhile; and every blob must be stored before
	// the first entry is appended.
	for _, f := range sum.Listing.Files {
		if ok, err := r.blobs.Has(ctx, f.Digest); err != nil || !ok {
			return Recorded{}, fmt.Errorf("%w: %s was not stored (the bundle changed while it was recorded?); nothing was appended: %v", evidence.ErrInvalidBundle, f.Path, err)
		}
	}
	if err := r.checkSigner(ctx, m); err != nil {
		return Recorded{}, err
	}
	if err := r.checkVersion(ctx, m); err != nil {
		return Recorded{}, err
	}
	if err := r.appendArtefacts(ctx, sum, p.Version, by); err != nil {
		return Recorded{}, err
	}
	if _, err := r.log.Append(ctx, ledger.Claim{Kind: ledger.KindBundle, Subject: ledger.Bundle{
		Digest: sum.Digest, Listing: sum.Digest, Files: int64(sum.Files), Size: sum.Size, Release: p.Version,
	}}, by); err != nil {
		return Recorded{}, fmt.Errorf("appending the bundle entry: %w", err)
	}
	rc, err := r.log.Append(ctx, ledger.Claim{Kind: ledger.KindRelease, Subject: ledger.Release{
		Version: p.Version, Bundle: sum.Digest, Manifest: md, KeyID: p.Signer.KeyID,
		Meaning: p.Meaning, SignedAt: p.SignedAt, Previous: p.PreviousRelease,
	}}, by)
	if err != nil {
		return Recorded{}, fmt.Errorf("appending the release entry: %w", err)
	}
	return Recorded{Manifest: m, Bundle: sum, Receipt: rc, Artefacts: sum.Files, Duplicate: rc.Duplicate}, nil
}

// checkSigner checks the manifest's signer against the log: enrolled, not
// revoked, in validity at signed_at, same identity, and the signature
// verifies with the enrolled key.
func (r *Registry) checkSigner(ctx context.Context, m *signing.Manifest) error {
	p := m.Predicate()
	st, err := r.Signer(ctx, p.Signer.KeyID)
	if err != nil {
		return err
	}
	if err := m.Verify(st.Key, m.Bundle); err != nil {
		return err
	}
	if st.Revoked {
		return fmt.Errorf("%w: %s was revoked at %s (%s); releases it signs are no longer recorded", ErrRevoked, st.KeyID, st.RevokedAt.Format(time.RFC3339), st.Revocation.Reason)
	}
	if st.Enrolment.Name != p.Signer.Name || st.Enrolment.Email != p.Signer.Email {
		return fmt.Errorf("%w: the manifest names %s <%s> but %s is enrolled for %s <%s>", ErrKeyBound, p.Signer.Name, p.Signer.Email, st.KeyID, st.Enrolment.Name, st.Enrolment.Email)
	}
	at, err := signing.ParseTime(p.SignedAt)
	if err != nil {
		return err
	}
	if at.After(r.now().Add(MaxClockSkew)) {
		return fmt.Errorf("%w: signed_at %s is in the future by this ledger's clock", signing.ErrInvalidManifest, p.SignedAt)
	}
	if at.Before(st.EnrolledAt.Add(-MaxClockSkew)) {
		return fmt.Errorf("%w (signed at %s, enrolled at %s)", ErrSignedBeforeEnrolment, p.SignedAt, st.EnrolledAt.Format(time.RFC3339))
	}
	if err := st.CheckSignature(at); err != nil {
		return err
	}
	// signed_at is the signer's word; the ledger's clock also bounds the
	// key's validity, so a late manifest cannot be backdated into it.
	if until := st.ValidUntil(); !until.IsZero() && r.now().After(until) {
		return fmt.Errorf("%w: %s was valid until %s, and it is now %s by this ledger's clock: a release is recorded only while its signer's key is valid (an admin enrols a new key; sign again with it)", ErrExpired, st.KeyID, st.Enrolment.ValidUntil, r.now().UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckBundle checks that the bundle at path, hashed as sum, is the one the
// manifest signs and is consistent with its own SHA256SUMS, naming the
// files its SHA256SUMS says changed. Recording runs it; a client recording
// through a node runs it first, to say the same before uploading.
func CheckBundle(m *signing.Manifest, sum evidence.Summary, path string) error {
	if sum.Digest != m.Bundle {
		msg := ""
		if bad, err := sumsMismatches(sum); err == nil && len(bad) > 0 {
			msg = "; by its SHA256SUMS: " + strings.Join(bad, "; ")
		}
		return fmt.Errorf("%w: the manifest signs %s, but %s hashes to %s%s", signing.ErrWrongBundle, m.Bundle, path, sum.Digest, msg)
	}
	p := m.Predicate()
	if p.Bundle.Files != int64(sum.Files) || p.Bundle.Size != sum.Size {
		return fmt.Errorf("%w: the predicate says %d files / %d bytes, the bundle has %d / %d", signing.ErrInvalidManifest, p.Bundle.Files, p.Bundle.Size, sum.Files, sum.Size)
	}
	bad, err := sumsMismatches(sum)
	if err != nil {
		return fmt.Errorf("%w: %v", evidence.ErrInvalidBundle, err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", evidence.ErrSumsMismatch, strings.Join(bad, "; "))
	}
	return nil
}

// sumsMismatches compares the bundle with its SHA256SUMS, if it has one.
func sumsMismatches(sum evidence.Summary) ([]string, error) {
	if sum.SumsTooLarge {
		return nil, fmt.Errorf("%s is over %d bytes, too large to check", evidence.SumsFile, evidence.MaxSumsSize)
	}
	if sum.Sums == nil {
		return nil, nil
	}
	ms, err := evidence.CheckSums(sum.Listing, sum.Sums)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out, nil
}

// checkVersion refuses a version already recorded with another manifest
// and a previous release the log does not hold.
func (r *Registry) checkVersion(ctx context.Context, m *signing.Manifest) error {
	p := m.Predicate()
	idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindRelease, Release: p.Version}, 0, 0)
	if err != nil {
		return err
	}
	for _, i := range idx {
		rel, err := r.release(ctx, i)
		if err != nil {
			return err
		}
		if rel.Version == p.Version && rel.Manifest != m.Digest() {
			return fmt.Errorf("%w: %s was recorded at index %d with bundle %s and manifest %s; a version is recorded once (sign a new version)", ErrVersionTaken, p.Version, i, rel.Bundle, rel.Manifest)
		}
	}
	if prev := p.PreviousRelease; prev != nil {
		idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindRelease, Digest: prev.String()}, 0, 0)
		if err != nil {
			return err
		}
		ok := false
		for _, i := range idx {
			rel, err := r.release(ctx, i)
			if err != nil {
				return err
			}
			ok = ok || rel.Manifest == *prev
		}
		if !ok {
			return fmt.Errorf("%w: the previous release's manifest %s is not recorded in this log (record it first, or sign without --previous)", ErrUnknownRelease, prev)
		}
	}
	return nil
}

// release reads the release entry at index i.
func (r *Registry) release(ctx context.Context, i uint64) (ledger.Release, error) {
	e, err := r.entry(ctx, i)
	if err != nil {
		return ledger.Release{}, err
	}
	var rel ledger.Release
	if err := e.DecodeSubject(&rel); err != nil {
		return ledger.Release{}, fmt.Errorf("release entry %d: %w", i, err)
	}
	return rel, nil
}

// findRelease looks for the release entry recording exactly this manifest.
func (r *Registry) findRelease(ctx context.Context, m *signing.Manifest) (uint64, bool, error) {
	idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindRelease, Digest: m.Digest().String()}, 0, 0)
	if err != nil {
		return 0, false, err
	}
	for _, i := range idx {
		rel, err := r.release(ctx, i)
		if err != nil {
			return 0, false, err
		}
		if rel.Manifest == m.Digest() {
			return i, true, nil
		}
	}
	return 0, false, nil
}

func (r *Registry) putBytes(ctx context.Context, b []byte) (cas.Digest, error) {
	d := cas.Sum(b)
	if _, err := r.blobs.Put(ctx, bytes.NewReader(b), &d); err != nil {
		return cas.Digest{}, err
	}
	return d, nil
}

// storeFiles stores every file of the bundle, each checked against the
// digest the listing gives it, so a bundle changed since it was hashed is
// caught.
func (r *Registry) storeFiles(ctx context.Context, bundle string, sum evidence.Summary, progress func(done, total int64)) error {
	var done int64
	return evidence.Walk(ctx, bundle, func(f evidence.File, rd io.Reader) error {
		want, ok := sum.Listing.Lookup(f.Path)
		if !ok {
			return fmt.Errorf("%w: %s appeared in the bundle after it was hashed", evidence.ErrInvalidBundle, f.Path)
		}
		if _, err := r.blobs.Put(ctx, rd, &want.Digest); err != nil {
			return fmt.Errorf("storing %s: %w", f.Path, err)
		}
		done += f.Size
		if progress != nil {
			progress(done, sum.Size)
		}
		return nil
	})
}

// appendArtefacts appends an artefact entry per bundle file, several at a
// time so that the log's group commit batches them.
func (r *Registry) appendArtefacts(ctx context.Context, sum evidence.Summary, version, by string) error {
	files := sum.Listing.Files
	_, err := r.appendAll(ctx, ledger.KindArtefact, len(files), func(i int) any {
		f := files[i]
		return ledger.Artefact{Digest: f.Digest, Size: f.Size, Name: f.Path, MediaType: ledger.MediaType(f.Path), Release: version}
	}, by)
	return err
}
