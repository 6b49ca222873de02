package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// LogView is a view of the log beyond a release's receipt, to check the
// release against: a live node, or the proofs an audit package carries.
// Nothing it answers is trusted: checkpoints are verified with the log key
// and entries with inclusion proofs.
type LogView interface {
	// Name is what the checks call the view's checkpoint: "node" or
	// "package".
	Name() string
	Checkpoint(ctx context.Context) ([]byte, error)
	ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error)
	ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error)
	// SignerEntries returns every signer entry for the key id, in log
	// order.
	SignerEntries(ctx context.Context, keyID string) ([]client.Entry, error)
}

// unreachable reports whether err says that the node could not be asked
// or could not answer (a refused or dropped connection, a timeout, a 502,
// 503 or 504), rather than what it answered.
func unreachable(err error) bool {
	var (
		ne net.Error
		ce *client.Error
	)
	if errors.As(err, &ce) {
		return ce.Status == http.StatusBadGateway || ce.Status == http.StatusServiceUnavailable || ce.Status == http.StatusGatewayTimeout
	}
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// nodeView is a node as a LogView.
type nodeView struct{ *client.Client }

func (nodeView) Name() string { return "node" }

func (n nodeView) SignerEntries(ctx context.Context, keyID string) ([]client.Entry, error) {
	return n.Search(ctx, client.Query{Kind: string(ledger.KindSigner), KeyID: keyID}, 0, 0)
}

// verifyWithLog runs the checks that need the log beyond the receipt,
// trusting the view for nothing it cannot prove: its checkpoint must
// verify with the log key, the log must have grown consistently from the
// receipt's checkpoint (and from SinceCheckpoint), and the signer's
// enrolment and revocation entries, each proven included in that
// checkpoint, must show the key enrolled, not revoked and within its
// validity at signed_at.
func verifyWithLog(ctx context.Context, in VerifyInput, m *signing.Manifest, rep *Report, add func(name, status, format string, args ...any) bool) {
	view := in.Log
	if view == nil && in.Node != nil {
		view = nodeView{in.Node}
	}
	if view == nil {
		return
	}
	what := view.Name()
	if in.LogKey == nil {
		add(what, Failed, "checking against a %s needs the log's public key (--log-key log.pub)", what)
		return
	}
	signed, err := view.Checkpoint(ctx)
	if err != nil {
		status := Failed
		if unreachable(err) {
			status = Unchecked
		}
		add(what+" checkpoint", status, "%v", err)
		return
	}
	cur, err := proofs.OpenCheckpoint(signed, in.LogKey)
	if err != nil {
		add(what+" checkpoint", Failed, "the %s's checkpoint does not verify with the log key: %v", what, err)
		return
	}
	add(what+" checkpoint", Passed, "%s at tree size %d, signed by the log key", cur.Origin, cur.Size)

	// Consistency: from the receipt's checkpoint, and from the one the
	// auditor saved, to the node's current one.
	var olds []struct {
		name string
		text []byte
	}
	if in.Receipt != nil {
		if rc, err := proofs.ParseReceipt(in.Receipt); err == nil {
			olds = append(olds, struct {
				name string
				text []byte
			}{"the receipt's checkpoint", []byte(rc.Checkpoint)})
		}
	}
	if in.SinceCheckpoint != nil {
		name := in.SinceName
		if name == "" {
			name = "the saved checkpoint"
		}
		olds = append(olds, struct {
			name string
			text []byte
		}{name, in.SinceCheckpoint})
	}
	for _, o := range olds {
		old, err := proofs.OpenCheckpoint(o.text, in.LogKey)
		if err != nil {
			add("consistency", Failed, "%s does not verify with the log key: %v", o.name, err)
			continue
		}
		switch {
		case old.Size > cur.Size:
			add("consistency", Failed, "ROLLBACK: %s is at size %d, the %s's checkpoint is at %d", o.name, old.Size, what, cur.Size)
		case old.Size == cur.Size:
			if !bytes.Equal(old.Root, cur.Root) {
				add("consistency", Failed, "FORK: %s and the %s's checkpoint have different roots at size %d", o.name, what, cur.Size)
			} else {
				add("consistency", Passed, "%s is the %s's checkpoint (size %d)", o.name, what, cur.Size)
			}
		default:
			p, err := view.ProveConsistency(ctx, old.Size, cur.Size)
			if err == nil {
				err = proofs.VerifyConsistency(p, old.Root, cur.Root)
			}
			if err != nil {
				add("consistency", Failed, "FORK: the log at size %d is not a prefix of the %s's at %d (%s): %v", old.Size, what, cur.Size, o.name, err)
			} else {
				add("consistency", Passed, "the log grew from %d (%s) to %d without rewriting anything", old.Size, o.name, cur.Size)
			}
		}
	}

	// Without a receipt, the node is asked for the release's record: a
	// manifest it never recorded is not a release, whatever the manifest
	// says of when it was signed.
	if in.Receipt == nil && in.Log == nil {
		recordOnNode(ctx, nodeView{in.Node}, cur, m, rep, add)
	}

	// The signer's enrolment at signing time, from proven entries.
	keyID := m.Predicate().Signer.KeyID
	found, err := view.SignerEntries(ctx, keyID)
	if err != nil {
		add("signer enrolment", Failed, "%v", err)
		return
	}
	var st *SignerState
	for _, e := range found {
		if e.Index >= cur.Size {
			continue // not yet under the checkpoint we verified
		}
		if err := proven(ctx, view, cur, e); err != nil {
			add("signer enrolment", Failed, "the %s's signer entry %d is not proven in its checkpoint: %v", what, e.Index, err)
			return
		}
		ent, err := ledger.ParseEntry(e.Entry)
		if err != nil {
			add("signer enrolment", Failed, "signer entry %d: %v", e.Index, err)
			return
		}
		var s ledger.Signer
		if err := ent.DecodeSubject(&s); err != nil || s.KeyID != keyID {
			add("signer enrolment", Failed, "entry %d is not a signer entry for %s", e.Index, keyID)
			return
		}
		at, _ := time.Parse(time.RFC3339Nano, ent.LoggedAt)
		switch {
		case st == nil && s.Action == ledger.SignerEnroll:
			st = &SignerState{KeyID: keyID, Enrolment: s, EnrolledAt: at, Index: e.Index}
		case st != nil && s.Action == ledger.SignerEnroll && !st.Revoked:
			st.Enrolment, st.Index = s, e.Index
		case st != nil && s.Action == ledger.SignerRevoke && !st.Revoked:
			st.Revoked, st.Revocation, st.RevokedAt = true, s, at
		}
	}
	if st == nil {
		if view.Name() == "package" {
			// A package carries the entries it was made with; one
			// without them is damaged or incomplete, which says nothing
			// of the log itself.
			add("signer enrolment", Failed, "the package's signer entries hold no enrolment of %s: the package is damaged or incomplete (the log's own record can be checked with --node)", keyID)
			return
		}
		add("signer enrolment", Failed, "%s was never enrolled in %s", keyID, cur.Origin)
		return
	}
	if st.Enrolment.PublicKey != string(in.SignerKey.PEM()) {
		add("signer enrolment", Failed, "the enrolled key for %s is not the signer key you were given", keyID)
		return
	}
	signedAt, _ := signing.ParseTime(m.Predicate().SignedAt)
	if signedAt.Before(st.EnrolledAt.Add(-MaxClockSkew)) {
		add("signer enrolment", Failed, "signed at %s, before the key was enrolled at %s (entry %d)", m.Predicate().SignedAt, st.EnrolledAt.Format(time.RFC3339), st.Index)
		return
	}
	if err := st.CheckSignature(signedAt); err != nil {
		add("signer enrolment", Failed, "%v", err)
		return
	}
	status := "not revoked"
	if what != "node" {
		// A package shows only the signer entries it carries.
		status = "no revocation among the " + what + "'s signer entries (add --node URL to check the live log)"
	}
	if st.Revoked {
		status = fmt.Sprintf("revoked later, at %s (%s): signatures before then still count", st.RevokedAt.Format(time.RFC3339), st.Revocation.Reason)
	}
	add("signer enrolment", Passed, "%s <%s> enrolled as %s at %s (entry %d, proven), %s", st.Enrolment.Name, st.Enrolment.Email, st.Enrolment.Role, st.EnrolledAt.Format(time.RFC3339), st.Index, status)
}

// recordOnNode finds, among the node's release entries for the manifest's
// version, the one recording this manifest, proven in the node's
// checkpoint cur, and makes it the report's record; or adds the failed
// check.
func recordOnNode(ctx context.Context, view nodeView, cur proofs.Checkpoint, m *signing.Manifest, rep *Report, add func(name, status, format string, args ...any) bool) bool {
	version := m.Predicate().Version
	found, err := view.Search(ctx, client.Query{Kind: string(ledger.KindRelease), Release: version}, 0, 0)
	if err != nil {
		return add("ledger record", Failed, "%v", err)
	}
	var other []string
	for _, e := range found {
		if e.Index >= cur.Size {
			continue // not yet under the checkpoint we verified
		}
		if err := proven(ctx, view, cur, e); err != nil {
			return add("ledger record", Failed, "the node's release entry %d is not proven in its checkpoint: %v", e.Index, err)
		}
		ent, err := ledger.ParseEntry(e.Entry)
		if err != nil || ent.Kind != ledger.KindRelease {
			return add("ledger record", Failed, "the node's entry %d is not a release entry (%v)", e.Index, err)
		}
		var rel ledger.Release
		if err := ent.DecodeSubject(&rel); err != nil || rel.Version != version {
			continue
		}
		if rel.Manifest != rep.Manifest {
			other = append(other, fmt.Sprintf("entry %d, manifest %s", e.Index, rel.Manifest))
			continue
		}
		if err := matchRecord(ent, m, rep); err != nil {
			return add("ledger record", Failed, "%v", err)
		}
		rep.Record = &RecordReference{Origin: cur.Origin, Index: e.Index, TreeSize: cur.Size, LoggedAt: ent.LoggedAt}
		return add("ledger record", Passed, "release entry %d on the node records this manifest (%s), logged at %s by %s, proven in its checkpoint", e.Index, rep.Manifest, ent.LoggedAt, ent.LoggedBy)
	}
	if len(other) > 0 {
		return add("ledger record", Failed, "the node's log records %s with another manifest (%s), not this one (%s)", version, strings.Join(other, "; "), rep.Manifest)
	}
	return add("ledger record", Failed, "the node's log (tree size %d) has no record of release %s: this manifest was never recorded (ledger release record)", cur.Size, version)
}

// proven checks, with the view's inclusion proof, that entry e is in the
// tree of the verified checkpoint cur.
func proven(ctx context.Context, view LogView, cur proofs.Checkpoint, e client.Entry) error {
	p, err := view.ProveInclusion(ctx, e.Index, cur.Size)
	if err != nil {
		return err
	}
	return proofs.VerifyInclusion(p, proofs.LeafHash(e.Entry), cur.Root)
}
