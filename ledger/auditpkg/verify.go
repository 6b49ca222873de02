package auditpkg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// VerifyOptions are what an auditor brings to a package: the bundle and
// the keys they trust.
type VerifyOptions struct {
	Bundle string        // the evidence bundle: a directory, .tar or .tar.gz
	LogKey note.Verifier // the ledger's public key, obtained independently; required
	// SignerKey, if set, is the signer's key as handed to the auditor;
	// otherwise the package's signer.pub is used, which counts only
	// because the signer check proves the ledger enrolled it.
	SignerKey *signing.PublicKey
	Progress  func(done, total int64)
	// Node, if set, is the live log to check the package against too:
	// its checkpoint, consistency from the package's checkpoint to it,
	// and the signer's enrolment as the live log proves it (a revocation
	// the package predates shows there).
	Node *client.Client
}

// Verify runs every check of release.Verify with the package's manifest,
// listing and receipt, the log checks (consistency from the receipt's
// checkpoint to the package's, and the signer's proven enrolment at
// signing time) with the package's proofs, and then the package's own:
// that its log.pub is the key given, that its label agrees with the
// proofs, and that its stamps are the signed stamp list, each proven in
// the log before the release.
func (p *Package) Verify(ctx context.Context, o VerifyOptions) release.Report {
	if o.LogKey == nil {
		rep := release.Report{Manifest: cas.Sum(p.Manifest)}
		rep.Add("log key", release.Failed, "an audit package is checked with the ledger's public key obtained on your own (--log-key log.pub); the package's copy proves nothing by itself")
		rep.Finish()
		return rep
	}
	key := o.SignerKey
	if key == nil {
		k, err := signing.ParsePublicKey(p.SignerKey)
		if err != nil {
			rep := release.Report{Manifest: cas.Sum(p.Manifest)}
			rep.Add("signer key", release.Failed, fmt.Sprintf("%s: %v", fileSignerKey, err))
			rep.Finish()
			return rep
		}
		key = &k
	}
	rep := release.Verify(ctx, release.VerifyInput{
		Bundle:    o.Bundle,
		Manifest:  p.Manifest,
		SignerKey: *key,
		Listing:   p.Listing,
		LogKey:    o.LogKey,
		Receipt:   p.Receipt,
		Log:       packageView{p},
		Progress:  o.Progress,
	})
	p.checkLogKey(&rep, o.LogKey)
	p.checkProofs(&rep, o.LogKey)
	p.checkLabel(&rep)
	p.checkStamps(&rep, o.LogKey)
	if o.Node != nil {
		release.VerifyLog(ctx, release.VerifyInput{Manifest: p.Manifest, SignerKey: *key, LogKey: o.LogKey, Node: o.Node, SinceCheckpoint: p.Checkpoint, SinceName: "the package's checkpoint"}, &rep)
	}
	rep.Finish()
	return rep
}

// checkLogKey compares the package's log.pub with the key given: a
// package made by another ledger, or with a substituted key, fails here
// and in every proof.
func (p *Package) checkLogKey(rep *release.Report, key note.Verifier) {
	v, err := proofs.NewVerifier(strings.TrimSpace(string(p.LogKey)))
	switch {
	case err != nil:
		rep.Add("package log key", release.Failed, fmt.Sprintf("%s: %v", fileLogKey, err))
	case v.Name() != key.Name() || v.KeyHash() != key.KeyHash():
		rep.Add("package log key", release.Failed, fmt.Sprintf("the package's %s is %s+%08x, not the key you gave (%s+%08x)", fileLogKey, v.Name(), v.KeyHash(), key.Name(), key.KeyHash()))
	default:
		rep.Add("package log key", release.Passed, fmt.Sprintf("the package's %s is the key you gave (%s+%08x)", fileLogKey, v.Name(), v.KeyHash()))
	}
}

// checkProofs checks every proof the package carries, including those the
// release's checks do not need: each line of the signer entries and the
// stamps is a receipt that verifies in full, with its checkpoint the
// package's, and consistency.json proves the receipt's tree a prefix of
// the package's (even when the two are the same size). A line an auditor
// cuts out of the package then verifies on its own too
// (ledger verify-receipt).
func (p *Package) checkProofs(rep *release.Report, key note.Verifier) {
	const name = "package proofs"
	fail := func(format string, args ...any) { rep.Add(name, release.Failed, fmt.Sprintf(format, args...)) }
	cur, err := proofs.OpenCheckpoint(p.Checkpoint, key)
	if err != nil {
		fail("%s does not verify with the log key: %v", fileCheckpoint, err)
		return
	}
	n := 0
	for _, f := range []struct {
		name string
		b    []byte
	}{{fileSignerEntries, p.SignerEntries}, {fileStamps, p.Stamps}} {
		for i, line := range bytes.SplitAfter(f.b, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			rc, err := proofs.ParseReceipt(bytes.TrimSuffix(line, []byte("\n")))
			if err != nil {
				fail("%s line %d: %v", f.name, i+1, err)
				return
			}
			c, err := proofs.VerifyReceipt(rc, key)
			if err != nil {
				fail("%s line %d (entry %d): %v", f.name, i+1, rc.Index, err)
				return
			}
			if c.Size != cur.Size || !bytes.Equal(c.Root, cur.Root) {
				fail("%s line %d (entry %d): its checkpoint (size %d) is not the package's (size %d)", f.name, i+1, rc.Index, c.Size, cur.Size)
				return
			}
			n++
		}
	}
	rc, err := proofs.ParseReceipt(p.Receipt)
	if err != nil {
		fail("the release receipt: %v", err)
		return
	}
	old, err := proofs.VerifyReceipt(rc, key)
	if err != nil {
		fail("the release receipt: %v", err)
		return
	}
	var cons proofs.ConsistencyProof
	if err := strictjson.Decode(p.Consistency, &cons); err != nil {
		fail("%s: %v", fileConsistency, err)
		return
	}
	if cons.From != old.Size || cons.To != cur.Size {
		fail("%s proves %d to %d, not the receipt's size %d to the package's %d", fileConsistency, cons.From, cons.To, old.Size, cur.Size)
		return
	}
	if err := proofs.VerifyConsistency(cons, old.Root, cur.Root); err != nil {
		fail("%s: %v", fileConsistency, err)
		return
	}
	rep.Add(name, release.Passed, fmt.Sprintf("%d signer and stamp receipts each verify in full at the package's checkpoint, and %s proves size %d a prefix of size %d", n, fileConsistency, old.Size, cur.Size))
}

// checkLabel checks package.json agrees with what the proofs show.
func (p *Package) checkLabel(rep *release.Report) {
	var diffs []string
	if rep.Version != "" && rep.Version != p.Meta.Version {
		diffs = append(diffs, fmt.Sprintf("version %s, the manifest signs %s", p.Meta.Version, rep.Version))
	}
	if r := rep.Record; r != nil {
		if r.Origin != p.Meta.Origin {
			diffs = append(diffs, fmt.Sprintf("origin %q, the receipt's is %q", p.Meta.Origin, r.Origin))
		}
		if r.Index != p.Meta.ReleaseIndex {
			diffs = append(diffs, fmt.Sprintf("release index %d, the receipt's is %d", p.Meta.ReleaseIndex, r.Index))
		}
	}
	if c, err := proofs.ParseCheckpoint(p.Checkpoint); err == nil && c.Size != p.Meta.TreeSize {
		diffs = append(diffs, fmt.Sprintf("tree size %d, the checkpoint's is %d", p.Meta.TreeSize, c.Size))
	}
	if _, err := time.Parse(time.RFC3339, p.Meta.CreatedAt); err != nil {
		diffs = append(diffs, fmt.Sprintf("created_at %q, which is not an RFC 3339 time", p.Meta.CreatedAt))
	}
	if len(diffs) > 0 {
		rep.Add("package label", release.Failed, fileMeta+" says "+strings.Join(diffs, "; "))
		return
	}
	rep.Add("package label", release.Passed, fmt.Sprintf("%s, release entry %d of %s, packaged at tree size %d on %s (the date is the packager's word; nothing signs it)", p.Meta.Version, p.Meta.ReleaseIndex, p.Meta.Origin, p.Meta.TreeSize, p.Meta.CreatedAt))
}

// StampEntries returns the stamps of the package, each with its entry, in the
// order of the stamp list. They are not verified; Verify does that.
func (p *Package) StampEntries() ([]release.StampedEntry, error) {
	lines, err := release.ParseStampList(p.StampList)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileStampList, err)
	}
	receipts, err := parseReceipts(p.Stamps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileStamps, err)
	}
	byIndex := map[uint64]proofs.Receipt{}
	for _, rc := range receipts {
		byIndex[rc.Index] = rc
	}
	var out []release.StampedEntry
	for _, l := range lines {
		rc, ok := byIndex[l.Index]
		if !ok {
			return nil, fmt.Errorf("%s has no entry %d, which %s lists for %s", fileStamps, l.Index, fileStampList, l.UID)
		}
		e, err := ledger.ParseEntry(rc.Entry)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", l.Index, err)
		}
		var s ledger.Stamp
		if e.Kind != ledger.KindStamp {
			return nil, fmt.Errorf("entry %d is a %s entry, not a stamp", l.Index, e.Kind)
		}
		if err := e.DecodeSubject(&s); err != nil {
			return nil, fmt.Errorf("entry %d: %w", l.Index, err)
		}
		out = append(out, release.StampedEntry{Index: l.Index, Stamp: s, LoggedAt: e.LoggedAt, LoggedBy: e.LoggedBy, Digest: proofs.EntryDigest(rc.Entry)})
	}
	if len(receipts) != len(lines) {
		return nil, fmt.Errorf("%s has %d entries, %s lists %d", fileStamps, len(receipts), fileStampList, len(lines))
	}
	return out, nil
}

// checkStamps checks the stamp list is the one signed, and that each of
// its stamps is proven in the log, before the release, for the UID and
// REVIEWED_HASH the list states.
func (p *Package) checkStamps(rep *release.Report, key note.Verifier) {
	const name = "stamps"
	m, err := signing.ParseManifest(p.Manifest)
	if err != nil {
		return // the manifest check failed already
	}
	signed := m.Predicate().StampList()
	if signed == nil {
		rep.Add(name, release.Skipped, "the manifest records no stamp list (it was signed without the release gate)")
		return
	}
	if got := cas.Sum(p.StampList); got != *signed {
		rep.Add(name, release.Failed, fmt.Sprintf("%s hashes to %s, the manifest signs the stamp list %s", fileStampList, got, signed))
		return
	}
	stamps, err := p.StampEntries()
	if err != nil {
		rep.Add(name, release.Failed, err.Error())
		return
	}
	lines, _ := release.ParseStampList(p.StampList)
	cur, err := proofs.OpenCheckpoint(p.Checkpoint, key)
	if err != nil {
		rep.Add(name, release.Failed, fmt.Sprintf("%s does not verify with the log key: %v", fileCheckpoint, err))
		return
	}
	receipts, _ := parseReceipts(p.Stamps)
	byIndex := map[uint64]proofs.Receipt{}
	for _, rc := range receipts {
		byIndex[rc.Index] = rc
	}
	for i, s := range stamps {
		l, rc := lines[i], byIndex[s.Index]
		err := proofs.VerifyInclusion(proofs.InclusionProof{Index: rc.Index, TreeSize: rc.Inclusion.TreeSize, Hashes: rc.Inclusion.Hashes}, proofs.LeafHash(rc.Entry), cur.Root)
		switch {
		case rc.Inclusion.TreeSize != cur.Size || err != nil:
			rep.Add(name, release.Failed, fmt.Sprintf("stamp entry %d (%s) is not proven in the package's checkpoint (size %d): %v", s.Index, l.UID, cur.Size, err))
			return
		case s.Digest != l.EntryDigest:
			rep.Add(name, release.Failed, fmt.Sprintf("entry %d has digest %s, the stamp list says %s", s.Index, s.Digest, l.EntryDigest))
			return
		case s.Stamp.UID != l.UID || s.Stamp.ReviewedHash != l.ReviewedHash:
			rep.Add(name, release.Failed, fmt.Sprintf("entry %d stamps %s %s, the stamp list says %s %s", s.Index, s.Stamp.UID, s.Stamp.ReviewedHash, l.UID, l.ReviewedHash))
			return
		case rep.Record != nil && s.Index >= rep.Record.Index:
			rep.Add(name, release.Failed, fmt.Sprintf("stamp entry %d (%s) was logged after the release entry %d", s.Index, l.UID, rep.Record.Index))
			return
		}
	}
	rep.Add(name, release.Passed, fmt.Sprintf("the %d stamps of the signed stamp list (%s) are each proven in the log before the release", len(stamps), signed))
}

func parseReceipts(b []byte) ([]proofs.Receipt, error) {
	var out []proofs.Receipt
	for n, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rc, err := proofs.ParseReceipt(bytes.TrimSpace(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, rc)
	}
	return out, nil
}

// packageView is a package's proofs as a release.LogView.
type packageView struct{ p *Package }

func (packageView) Name() string { return "package" }

func (v packageView) Checkpoint(context.Context) ([]byte, error) { return v.p.Checkpoint, nil }

func (v packageView) ProveConsistency(_ context.Context, from, to uint64) (proofs.ConsistencyProof, error) {
	var c proofs.ConsistencyProof
	dec := json.NewDecoder(bytes.NewReader(v.p.Consistency))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %v", fileConsistency, err)
	}
	if c.From != from || c.To != to {
		return c, fmt.Errorf("%s proves %d to %d, not %d to %d", fileConsistency, c.From, c.To, from, to)
	}
	return c, nil
}

func (v packageView) ProveInclusion(_ context.Context, index, size uint64) (proofs.InclusionProof, error) {
	rcs, err := parseReceipts(v.p.SignerEntries)
	if err != nil {
		return proofs.InclusionProof{}, fmt.Errorf("%s: %w", fileSignerEntries, err)
	}
	for _, rc := range rcs {
		if rc.Index == index && rc.Inclusion.TreeSize == size {
			return proofs.InclusionProof{Index: index, TreeSize: size, Hashes: rc.Inclusion.Hashes}, nil
		}
	}
	return proofs.InclusionProof{}, fmt.Errorf("%s has no proof for entry %d at tree size %d", fileSignerEntries, index, size)
}

func (v packageView) SignerEntries(_ context.Context, keyID string) ([]client.Entry, error) {
	rcs, err := parseReceipts(v.p.SignerEntries)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileSignerEntries, err)
	}
	var out []client.Entry
	for i, rc := range rcs {
		if i > 0 && rc.Index <= rcs[i-1].Index {
			return nil, fmt.Errorf("%s is not in log order", fileSignerEntries)
		}
		out = append(out, client.Entry{Index: rc.Index, Entry: rc.Entry})
	}
	return out, nil
}
