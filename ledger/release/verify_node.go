package release

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// verifyWithNode runs the checks that need the live log, trusting the node
// for nothing it cannot prove: the node's checkpoint must verify with the
// log key, the log must have grown consistently from the receipt's
// checkpoint (and from SinceCheckpoint), and the signer's enrolment and
// revocation entries, each proven included in that checkpoint, must show
// the key enrolled, not revoked and within its validity at signed_at.
func verifyWithNode(ctx context.Context, in VerifyInput, m *signing.Manifest, rep *Report, add func(name, status, format string, args ...any) bool) {
	if in.Node == nil {
		return
	}
	if in.LogKey == nil {
		add("node", Failed, "checking against a node needs the log's public key (--log-key log.pub)")
		return
	}
	signed, err := in.Node.Checkpoint(ctx)
	if err != nil {
		add("node checkpoint", Failed, "%v", err)
		return
	}
	cur, err := proofs.OpenCheckpoint(signed, in.LogKey)
	if err != nil {
		add("node checkpoint", Failed, "the node's checkpoint does not verify with the log key: %v", err)
		return
	}
	add("node checkpoint", Passed, "%s at tree size %d, signed by the log key", cur.Origin, cur.Size)

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
		olds = append(olds, struct {
			name string
			text []byte
		}{"the saved checkpoint", in.SinceCheckpoint})
	}
	for _, o := range olds {
		old, err := proofs.OpenCheckpoint(o.text, in.LogKey)
		if err != nil {
			add("consistency", Failed, "%s does not verify with the log key: %v", o.name, err)
			continue
		}
		switch {
		case old.Size > cur.Size:
			add("consistency", Failed, "ROLLBACK: %s is at size %d, the node now signs %d", o.name, old.Size, cur.Size)
		case old.Size == cur.Size:
			if !bytes.Equal(old.Root, cur.Root) {
				add("consistency", Failed, "FORK: %s and the node sign different roots at size %d", o.name, cur.Size)
			} else {
				add("consistency", Passed, "%s is the node's current one (size %d)", o.name, cur.Size)
			}
		default:
			p, err := in.Node.ProveConsistency(ctx, old.Size, cur.Size)
			if err == nil {
				err = proofs.VerifyConsistency(p, old.Root, cur.Root)
			}
			if err != nil {
				add("consistency", Failed, "FORK: the log at size %d is not a prefix of the node's at %d (%s): %v", old.Size, cur.Size, o.name, err)
			} else {
				add("consistency", Passed, "the log grew from %d (%s) to %d without rewriting anything", old.Size, o.name, cur.Size)
			}
		}
	}

	// The signer's enrolment at signing time, from proven entries.
	keyID := m.Predicate().Signer.KeyID
	found, err := in.Node.Search(ctx, client.Query{Kind: string(ledger.KindSigner), KeyID: keyID}, 0, 0)
	if err != nil {
		add("signer enrolment", Failed, "%v", err)
		return
	}
	var st *SignerState
	for _, e := range found {
		if e.Index >= cur.Size {
			continue // not yet under the checkpoint we verified
		}
		p, err := in.Node.ProveInclusion(ctx, e.Index, cur.Size)
		if err == nil {
			err = proofs.VerifyInclusion(p, proofs.LeafHash(e.Entry), cur.Root)
		}
		if err != nil {
			add("signer enrolment", Failed, "the node's signer entry %d is not proven in its checkpoint: %v", e.Index, err)
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
	if st.Revoked {
		status = fmt.Sprintf("revoked later, at %s (%s): signatures before then still count", st.RevokedAt.Format(time.RFC3339), st.Revocation.Reason)
	}
	add("signer enrolment", Passed, "%s <%s> enrolled as %s at %s (entry %d, proven), %s", st.Enrolment.Name, st.Enrolment.Email, st.Enrolment.Role, st.EnrolledAt.Format(time.RFC3339), st.Index, status)
}
