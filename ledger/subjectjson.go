package ledger

import (
	"strconv"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/internal/flatjson"
)

// Subjects sent over HTTP arrive as JSON, and decoding them with
// encoding/json cost as much as the rest of preparing an append. Nearly
// every subject is a flat object of exactly named fields with plain
// strings and integers, which decodeFlat reads directly; for anything
// else (escapes, another spelling of a key, a repeated key, null, a
// value of the wrong type, a malformed digest) it declines, and
// strictjson.Decode decodes it strictly and gives its error. Where decodeFlat
// succeeds, the result is what strictjson.Decode gives (FuzzDecodeSubject
// checks it).

// flatRef is a field decodeFlat may fill: its JSON name and a pointer to
// it, a *string, *int64 or *cas.Digest.
type flatRef struct {
	name string
	p    any
}

// decodeFlat sets the fields of *dst named in raw, as strictjson.Decode would,
// and reports true; or reports false when raw is not a flat object of the
// fields of *dst, or dst not a subject it knows, having perhaps set some
// of them.
func decodeFlat(raw []byte, dst any) bool {
	var refs [8]flatRef
	switch s := dst.(type) {
	case *Artefact:
		refs = [8]flatRef{{"digest", &s.Digest}, {"size", &s.Size}, {"name", &s.Name}, {"media_type", &s.MediaType},
			{"release", &s.Release}, {"build", &s.Build}}
	case *Bundle:
		refs = [8]flatRef{{"digest", &s.Digest}, {"listing", &s.Listing}, {"files", &s.Files}, {"size", &s.Size}, {"release", &s.Release}}
	case *Stamp:
		refs = [8]flatRef{{"uid", &s.UID}, {"reviewed_hash", &s.ReviewedHash}, {"document", &s.Document}, {"document_digest", &s.DocumentDigest},
			{"pr", &s.PR}, {"commit", &s.Commit}, {"approver", &s.Approver}, {"approved_at", &s.ApprovedAt}}
	case *Signer:
		refs = [8]flatRef{{"action", &s.Action}, {"key_id", &s.KeyID}, {"public_key", &s.PublicKey}, {"name", &s.Name},
			{"email", &s.Email}, {"role", &s.Role}, {"valid_until", &s.ValidUntil}, {"reason", &s.Reason}}
	default:
		return false
	}
	var seen uint8
	return flatjson.Members(raw, func(k []byte, v flatjson.Value) bool {
		for i, r := range refs {
			if r.p == nil || string(k) != r.name {
				continue
			}
			if seen&(1<<i) != 0 {
				return false // encoding/json keeps the last; leave it to it
			}
			seen |= 1 << i
			return setFlat(r.p, v)
		}
		return false // unknown, or a spelling only encoding/json matches
	})
}

// setFlat sets the field p points to from v, if v has the field's type.
func setFlat(p any, v flatjson.Value) bool {
	switch p := p.(type) {
	case *string:
		if v.Kind != flatjson.String {
			return false
		}
		*p = string(v.Raw)
	case *int64:
		if v.Kind != flatjson.Int {
			return false
		}
		n, err := strconv.ParseInt(string(v.Raw), 10, 64)
		if err != nil {
			return false
		}
		*p = n
	case *cas.Digest:
		if v.Kind != flatjson.String {
			return false
		}
		return p.UnmarshalText(v.Raw) == nil
	default:
		return false
	}
	return true
}
