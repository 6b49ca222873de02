package release

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// VerifyInput is what an auditor verifies a release with. Only the keys
// given are trusted.
type VerifyInput struct {
	Bundle    string            // path of the bundle: directory, .tar or .tar.gz
	Manifest  []byte            // the manifest file
	SignerKey signing.PublicKey // the signer's public key, handed to the auditor
	// Listing, if set, is the signed listing (release-vX.Y.Z.listing),
	// used to name the files of a bundle that does not match.
	Listing []byte
	// LogKey and Receipt, if set, check the ledger record of the release.
	LogKey  note.Verifier
	Receipt []byte
	// Node, if set, is a ledger node to check the live log with (its
	// answers are verified with LogKey): consistency from the receipt's
	// checkpoint and from SinceCheckpoint to the node's current one, and
	// the signer's enrolment at signing time.
	Node            *client.Client
	SinceCheckpoint []byte
	// SinceName is what the checks call SinceCheckpoint: "the saved
	// checkpoint" when empty.
	SinceName string
	// Log, if set instead of Node, is another view of the log to run the
	// same checks with, such as an audit package's proofs.
	Log LogView
	// Progress, if set, is told of bytes hashed.
	Progress func(done, total int64)
}

// Check statuses. Unchecked is a check that could not be made, because
// the node it needs did not answer: the release is then not verified, but
// nothing found it wrong either.
const (
	Passed    = "ok"
	Failed    = "failed"
	Skipped   = "skipped"
	Unchecked = "unchecked"
)

// Check is one step of a verification and its outcome.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// Report is the outcome of Verify, for people (Checks and Conclusion) and
// tools (--json).
type Report struct {
	Verified   bool             `json:"verified"`
	Conclusion string           `json:"conclusion"`
	Checks     []Check          `json:"checks"`
	Version    string           `json:"version,omitempty"`
	Meaning    string           `json:"meaning,omitempty"`
	SignedAt   string           `json:"signed_at,omitempty"`
	Signer     *signing.Signer  `json:"signer,omitempty"`
	Bundle     *cas.Digest      `json:"bundle,omitempty"`
	Manifest   cas.Digest       `json:"manifest"`
	Record     *RecordReference `json:"record,omitempty"`
}

// RecordReference locates the release entry in the log.
type RecordReference struct {
	Origin   string `json:"origin"`
	Index    uint64 `json:"index"`
	TreeSize uint64 `json:"tree_size"`
	LoggedAt string `json:"logged_at"`
}

// FirstFailure returns the first failed check, if any.
func (r Report) FirstFailure() (Check, bool) {
	return r.first(Failed)
}

// first returns the first check of the given status, if any.
func (r Report) first(status string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Status == status {
			return c, true
		}
	}
	return Check{}, false
}

// Verify checks a release the way DESIGN §5 describes, offline: the
// manifest's form, its signature with the signer's key, the bundle's
// canonical digest against the signed one (naming changed files when it
// can), the bundle summary, the bundle's own SHA256SUMS, and, given a log
// key and a receipt, the receipt's inclusion proof and checkpoint signature
// and that its entry records this very manifest. Every check runs that can;
// Verified is true only if none failed. Verify does not return an error:
// problems are failed checks.
func Verify(ctx context.Context, in VerifyInput) Report {
	var rep Report
	add := func(name, status, format string, args ...any) bool {
		rep.Checks = append(rep.Checks, Check{Name: name, Status: status, Detail: fmt.Sprintf(format, args...)})
		return status != Failed
	}
	rep.Manifest = cas.Sum(in.Manifest)
	m, err := signing.ParseManifest(in.Manifest)
	if err != nil {
		add("manifest", Failed, "%v", err)
		rep.Conclusion = conclusion(rep)
		return rep
	}
	p := m.Predicate()
	rep.Version, rep.Meaning, rep.SignedAt, rep.Signer, rep.Bundle = p.Version, p.Meaning, p.SignedAt, &p.Signer, &m.Bundle
	add("manifest", Passed, "Sigstore bundle, DSSE, in-toto statement for %s; meaning %q; signed_at %s", signing.SubjectName(p.Version), p.Meaning, p.SignedAt)

	if err := m.Verify(in.SignerKey, m.Bundle); err != nil {
		add("signature", Failed, "%v", err)
	} else {
		add("signature", Passed, "signed by %s <%s> with key %s", p.Signer.Name, p.Signer.Email, in.SignerKey.KeyID())
	}

	var signed *evidence.Listing
	if in.Listing != nil {
		l, err := evidence.ParseListing(in.Listing)
		switch {
		case err != nil:
			add("listing", Failed, "%v", err)
		case l.Digest() != m.Bundle:
			add("listing", Failed, "the listing hashes to %s, not to the signed %s: it is not the signed listing", l.Digest(), m.Bundle)
		default:
			signed = &l
			add("listing", Passed, "the listing is the signed one (%d files)", len(l.Files))
		}
	}

	sum, err := evidence.Hash(ctx, in.Bundle, evidence.Options{Progress: in.Progress})
	if err != nil {
		add("bundle digest", Failed, "%v", err)
	} else if sum.Digest != m.Bundle {
		why := ""
		switch bad, _ := sumsMismatches(sum); {
		case signed != nil:
			why = "; " + strings.Join(evidence.Diff(*signed, sum.Listing), "; ")
		case len(bad) > 0:
			why = "; by its SHA256SUMS: " + strings.Join(bad, "; ")
		default:
			why = "; give the signed listing (--listing) to name the files that differ"
		}
		add("bundle digest", Failed, "the bundle hashes to %s, the manifest signs %s%s", sum.Digest, m.Bundle, why)
	} else {
		add("bundle digest", Passed, "%s (%d files, %d bytes)", sum.Digest, sum.Files, sum.Size)
		if p.Bundle.Files != int64(sum.Files) || p.Bundle.Size != sum.Size {
			add("bundle summary", Failed, "the predicate says %d files / %d bytes, the bundle has %d / %d", p.Bundle.Files, p.Bundle.Size, sum.Files, sum.Size)
		} else {
			add("bundle summary", Passed, "%d files, %d bytes, as signed", sum.Files, sum.Size)
		}
	}
	if err == nil {
		switch bad, serr := sumsMismatches(sum); {
		case sum.Sums == nil && !sum.SumsTooLarge:
			add(evidence.SumsFile, Skipped, "the bundle has no %s", evidence.SumsFile)
		case serr != nil:
			add(evidence.SumsFile, Failed, "%v", serr)
		case len(bad) > 0:
			add(evidence.SumsFile, Failed, "%s", strings.Join(bad, "; "))
		default:
			add(evidence.SumsFile, Passed, "every file it lists matches")
		}
	}

	verifyRecord(in, m, &rep, add)
	verifyWithLog(ctx, in, m, &rep, add)
	rep.Finish()
	return rep
}

// verifyRecord checks the receipt, when given, against the log key and
// the manifest.
func verifyRecord(in VerifyInput, m *signing.Manifest, rep *Report, add func(name, status, format string, args ...any) bool) {
	if in.Receipt == nil {
		if in.Node == nil {
			add("ledger record", Skipped, "no receipt given (pass --receipt and --log-key to check the release is in the ledger)")
		} // else the node is searched for the record
		return
	}
	if in.LogKey == nil {
		add("ledger record", Failed, "a receipt needs the log's public key (--log-key log.pub) to be checked")
		return
	}
	rc, err := proofs.ParseReceipt(in.Receipt)
	if err != nil {
		add("receipt", Failed, "%v", err)
		return
	}
	cp, err := proofs.VerifyReceipt(rc, in.LogKey)
	if err != nil {
		add("receipt", Failed, "%v", err)
		return
	}
	add("receipt", Passed, "entry %d is in %s at tree size %d; checkpoint signed by the log key", rc.Index, cp.Origin, cp.Size)
	e, err := ledger.ParseEntry(rc.Entry)
	if err != nil {
		add("ledger record", Failed, "the receipt's entry: %v", err)
		return
	}
	if e.Kind != ledger.KindRelease {
		add("ledger record", Failed, "the receipt is for a %s entry, not a release", e.Kind)
		return
	}
	if err := matchRecord(e, m, rep); err != nil {
		add("ledger record", Failed, "%v", err)
		return
	}
	rep.Record = &RecordReference{Origin: cp.Origin, Index: rc.Index, TreeSize: cp.Size, LoggedAt: e.LoggedAt}
	add("ledger record", Passed, "release entry %d records this manifest (%s), logged at %s by %s", rc.Index, rep.Manifest, e.LoggedAt, e.LoggedBy)
}

// matchRecord checks that the release entry e records the manifest m
// (whose digest is rep.Manifest), field by field.
func matchRecord(e ledger.Entry, m *signing.Manifest, rep *Report) error {
	var rel ledger.Release
	if err := e.DecodeSubject(&rel); err != nil {
		return err
	}
	p := m.Predicate()
	var diffs []string
	for _, d := range []struct{ field, got, want string }{
		{"version", rel.Version, p.Version},
		{"bundle", rel.Bundle.String(), m.Bundle.String()},
		{"manifest", rel.Manifest.String(), rep.Manifest.String()},
		{"key_id", rel.KeyID, p.Signer.KeyID},
		{"meaning", rel.Meaning, p.Meaning},
		{"signed_at", rel.SignedAt, p.SignedAt},
		{"previous", digestOrNull(rel.Previous), digestOrNull(p.PreviousRelease)},
	} {
		if d.got != d.want {
			diffs = append(diffs, fmt.Sprintf("%s is %s in the log, %s in the manifest", d.field, d.got, d.want))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the logged release does not match this manifest: %s", strings.Join(diffs, "; "))
	}
	return nil
}

func digestOrNull(d *cas.Digest) string {
	if d == nil {
		return "null"
	}
	return d.String()
}

// VerifyLog adds to rep the checks against the log beyond the receipt
// (in.Node or in.Log) alone, for a report made already: the view's
// checkpoint, consistency from the receipt's checkpoint and from
// SinceCheckpoint, and the signer's proven enrolment at signing time.
// Call Finish after.
func VerifyLog(ctx context.Context, in VerifyInput, rep *Report) {
	m, err := signing.ParseManifest(in.Manifest)
	if err != nil {
		rep.Add("manifest", Failed, err.Error())
		return
	}
	verifyWithLog(ctx, in, m, rep, func(name, status, format string, args ...any) bool {
		rep.Add(name, status, fmt.Sprintf(format, args...))
		return status != Failed
	})
}

// Add appends a check, for checks made beyond Verify's (an audit
// package's stamps); call Finish after the last.
func (r *Report) Add(name, status, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, Status: status, Detail: detail})
}

// Finish sets Verified and the conclusion from the checks.
func (r *Report) Finish() {
	_, failed := r.FirstFailure()
	_, unchecked := r.first(Unchecked)
	r.Verified = !failed && !unchecked
	r.Conclusion = conclusion(*r)
}

// conclusion is the one sentence DESIGN §5 ends a verification with.
func conclusion(r Report) string {
	if c, failed := r.FirstFailure(); failed {
		return fmt.Sprintf("NOT VERIFIED: the %s check failed: %s.", c.Name, strings.TrimSuffix(c.Detail, "."))
	}
	if c, unchecked := r.first(Unchecked); unchecked {
		return fmt.Sprintf("NOT VERIFIED, NOTHING FOUND WRONG: the checks made passed, but the %s check could not be made: %s. Run it again once the node answers, or without --node for the offline checks alone.", c.Name, strings.TrimSuffix(c.Detail, "."))
	}
	s := fmt.Sprintf("This bundle's content matches the hash signed by %s <%s> (%s) at %s with meaning %s",
		r.Signer.Name, r.Signer.Email, r.Signer.KeyID, r.SignedAt, r.Meaning)
	if r.Record != nil {
		return s + fmt.Sprintf(", recorded at index %d of %s (tree size %d).", r.Record.Index, r.Record.Origin, r.Record.TreeSize)
	}
	return s + "; its ledger record was not checked."
}

// MarshalIndent is the report as indented JSON, for --json.
func (r Report) MarshalIndent() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	err := enc.Encode(r)
	return b.Bytes(), err
}
