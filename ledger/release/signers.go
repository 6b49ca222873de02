// Package release records signed releases in the ledger and verifies them:
// signer enrolment and revocation (21 CFR 11.100, 11.300), recording a
// release with its evidence bundle and manifest (11.10(f), 11.70), and the
// offline verification an auditor runs (11.10(a)).
//
// It composes ledger (the log), evidence (bundle digests) and signing
// (manifests). A Registry serialises the check-then-append steps that must
// not interleave (two enrolments of one key, two records of one version).
package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Errors a record or an enrolment is refused with. Each is wrapped with
// the details.
var (
	ErrNotEnrolled = errors.New("signer key is not enrolled")
	ErrRevoked     = errors.New("signer key is revoked")
	ErrExpired     = errors.New("signer key is outside its validity")
	// ErrSignedBeforeEnrolment is an ErrNotEnrolled: the key is enrolled,
	// but the manifest is dated before it was.
	ErrSignedBeforeEnrolment = fmt.Errorf("%w: signed before the key was enrolled", ErrNotEnrolled)
	ErrKeyBound              = errors.New("key id is enrolled to another person")
	ErrVersionTaken          = errors.New("release version is already recorded with other content")
	ErrUnknownRelease        = errors.New("release not found in the log")
)

// Registry records signers and releases in one log. Its methods are safe
// for concurrent use; those that append serialise with each other.
type Registry struct {
	log   *ledger.Log
	blobs cas.Store
	now   func() time.Time
	mu    sync.Mutex
}

// New returns a Registry over log, storing blobs in blobs (the store the
// log checks entries against).
func New(log *ledger.Log, blobs cas.Store) *Registry {
	return &Registry{log: log, blobs: blobs, now: time.Now}
}

// SignerState is what the log says about one signing key.
type SignerState struct {
	KeyID      string
	Enrolment  ledger.Signer // the latest enrolment
	EnrolledAt time.Time     // logged_at of the first enrolment
	Index      uint64        // log index of the latest enrolment
	Revoked    bool
	Revocation ledger.Signer
	RevokedAt  time.Time // logged_at of the revocation
	Key        signing.PublicKey
}

// ValidUntil returns the end of the key's validity, zero if none.
func (s SignerState) ValidUntil() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s.Enrolment.ValidUntil)
	return t
}

// CheckSignature reports whether a signature made at signedAt by this key
// counts: the key was enrolled, not revoked at or before signedAt, and
// within its validity window.
func (s SignerState) CheckSignature(signedAt time.Time) error {
	switch {
	case s.Revoked && !signedAt.Before(s.RevokedAt):
		return fmt.Errorf("%w: %s was revoked at %s (%s), before the signature dated %s", ErrRevoked, s.KeyID, s.RevokedAt.Format(time.RFC3339), s.Revocation.Reason, signedAt.Format(time.RFC3339))
	case !s.ValidUntil().IsZero() && signedAt.After(s.ValidUntil()):
		return fmt.Errorf("%w: %s was valid until %s, the signature is dated %s", ErrExpired, s.KeyID, s.Enrolment.ValidUntil, signedAt.Format(time.RFC3339))
	}
	return nil
}

// Signer returns the state of the key with id keyID. A key never enrolled
// gives ErrNotEnrolled.
func (r *Registry) Signer(ctx context.Context, keyID string) (SignerState, error) {
	states, err := r.signers(ctx, ledger.Query{Kind: ledger.KindSigner, KeyID: keyID})
	if err != nil {
		return SignerState{}, err
	}
	if len(states) == 0 {
		return SignerState{}, fmt.Errorf("%w: no enrolment of %s in the log (enrol it with ledger signer enroll)", ErrNotEnrolled, keyID)
	}
	return states[0], nil
}

// Signers returns every key ever enrolled, in order of first enrolment.
func (r *Registry) Signers(ctx context.Context) ([]SignerState, error) {
	return r.signers(ctx, ledger.Query{Kind: ledger.KindSigner})
}

func (r *Registry) signers(ctx context.Context, q ledger.Query) ([]SignerState, error) {
	idx, err := r.log.Search(ctx, q, 0, 0)
	if err != nil {
		return nil, err
	}
	entries := make([]IndexedEntry, len(idx))
	for k, i := range idx {
		b, err := r.log.Entry(ctx, i)
		if err != nil {
			return nil, err
		}
		entries[k] = IndexedEntry{Index: i, Entry: b}
	}
	return SignerStates(entries)
}

// IndexedEntry is a log entry with its index.
type IndexedEntry struct {
	Index uint64
	Entry []byte
}

// SignerStates replays signer entries, in log order, into the state of
// each key, in order of first enrolment: the latest enrolment holds until
// a revocation, which is final.
func SignerStates(entries []IndexedEntry) ([]SignerState, error) {
	byID := map[string]*SignerState{}
	var order []string
	for _, ie := range entries {
		i := ie.Index
		e, err := ledger.ParseEntry(ie.Entry)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if e.Kind != ledger.KindSigner {
			continue
		}
		var s ledger.Signer
		if err := e.DecodeSubject(&s); err != nil {
			return nil, fmt.Errorf("signer entry %d: %w", i, err)
		}
		at, err := time.Parse(time.RFC3339Nano, e.LoggedAt)
		if err != nil {
			return nil, fmt.Errorf("signer entry %d: logged_at: %w", i, err)
		}
		st := byID[s.KeyID]
		if st == nil {
			if s.Action != ledger.SignerEnroll {
				continue // a revocation of a key never enrolled is refused on append; skip defensively
			}
			k, err := signing.ParsePublicKey([]byte(s.PublicKey))
			if err != nil {
				return nil, fmt.Errorf("signer entry %d: %w", i, err)
			}
			st = &SignerState{KeyID: s.KeyID, EnrolledAt: at, Key: k}
			byID[s.KeyID] = st
			order = append(order, s.KeyID)
		}
		switch s.Action {
		case ledger.SignerEnroll:
			if !st.Revoked {
				st.Enrolment, st.Index = s, i
			}
		case ledger.SignerRevoke:
			if !st.Revoked {
				st.Revoked, st.Revocation, st.RevokedAt = true, s, at
			}
		}
	}
	out := make([]SignerState, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out, nil
}

func (r *Registry) entry(ctx context.Context, i uint64) (ledger.Entry, error) {
	b, err := r.log.Entry(ctx, i)
	if err != nil {
		return ledger.Entry{}, err
	}
	e, err := ledger.ParseEntry(b)
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("entry %d: %w", i, err)
	}
	return e, nil
}

// Enrolment is a request to enrol a signing key for one person.
type Enrolment struct {
	PublicKey  []byte // PEM
	Name       string
	Email      string
	Role       string
	ValidUntil time.Time // zero: no end
	Reason     string    // optional note
}

// Enroll appends a signer enrolment. The key id is computed from the key.
// A key id belongs to one person for ever (21 CFR 11.100(a)): enrolling it
// again for another name or email gives ErrKeyBound, and a revoked key
// cannot be enrolled again (ErrRevoked). Enrolling it again for the same
// person (a new role or validity) appends a new enrolment; the same
// enrolment twice gives the first receipt, marked duplicate.
func (r *Registry) Enroll(ctx context.Context, e Enrolment, by string) (proofs.Receipt, error) {
	k, err := signing.ParsePublicKey(e.PublicKey)
	if err != nil {
		return proofs.Receipt{}, err
	}
	s := ledger.Signer{
		Action: ledger.SignerEnroll, KeyID: k.KeyID(), PublicKey: string(k.PEM()),
		Name: e.Name, Email: e.Email, Role: e.Role, Reason: e.Reason,
	}
	if !e.ValidUntil.IsZero() {
		if !e.ValidUntil.After(r.now()) {
			return proofs.Receipt{}, fmt.Errorf("valid-until %s is in the past", e.ValidUntil.UTC().Format(time.RFC3339))
		}
		s.ValidUntil = e.ValidUntil.UTC().Format(signing.TimeFormat)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.Signer(ctx, s.KeyID)
	switch {
	case errors.Is(err, ErrNotEnrolled):
	case err != nil:
		return proofs.Receipt{}, err
	case st.Revoked:
		return proofs.Receipt{}, fmt.Errorf("%w: %s was revoked at %s (%s); a revoked key stays revoked: generate a new key with ledger keygen", ErrRevoked, s.KeyID, st.RevokedAt.Format(time.RFC3339), st.Revocation.Reason)
	case st.Enrolment.Name != s.Name || st.Enrolment.Email != s.Email:
		return proofs.Receipt{}, fmt.Errorf("%w: %s belongs to %s <%s> (log index %d); each person signs with their own key", ErrKeyBound, s.KeyID, st.Enrolment.Name, st.Enrolment.Email, st.Index)
	}
	rc, err := r.log.Append(ctx, ledger.Claim{Kind: ledger.KindSigner, Subject: s}, by)
	if err == nil && rc.Duplicate && st.Index != rc.Index {
		// The same enrolment as an earlier one that a later enrolment
		// replaced: the log would not record it again, so it would not
		// take effect. Say so instead of pretending.
		return proofs.Receipt{}, fmt.Errorf("this enrolment repeats the one at index %d, which the enrolment at index %d replaced; add a --reason to record it anew", rc.Index, st.Index)
	}
	return rc, err
}

// Revoke appends a revocation of an enrolled key. Signatures dated before
// the revocation still count; later ones do not.
func (r *Registry) Revoke(ctx context.Context, keyID, reason, by string) (proofs.Receipt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.Signer(ctx, keyID)
	if err != nil {
		return proofs.Receipt{}, err
	}
	if st.Revoked {
		return proofs.Receipt{}, fmt.Errorf("%w: %s is already revoked (since %s: %s)", ErrRevoked, keyID, st.RevokedAt.Format(time.RFC3339), st.Revocation.Reason)
	}
	return r.log.Append(ctx, ledger.Claim{Kind: ledger.KindSigner, Subject: ledger.Signer{Action: ledger.SignerRevoke, KeyID: keyID, Reason: reason}}, by)
}

// MarshalJSON gives a signer's state for `signer list --json`.
func (s SignerState) MarshalJSON() ([]byte, error) {
	v := map[string]any{
		"key_id": s.KeyID, "name": s.Enrolment.Name, "email": s.Enrolment.Email, "role": s.Enrolment.Role,
		"enrolled_at": s.EnrolledAt.UTC().Format(time.RFC3339Nano), "index": s.Index, "revoked": s.Revoked,
	}
	if s.Enrolment.ValidUntil != "" {
		v["valid_until"] = s.Enrolment.ValidUntil
	}
	if s.Revoked {
		v["revoked_at"] = s.RevokedAt.UTC().Format(time.RFC3339Nano)
		v["revocation_reason"] = s.Revocation.Reason
	}
	return json.Marshal(v)
}
