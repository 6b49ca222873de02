package ledger

import (
	"slices"
	"strconv"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"
)

// The subject structs are flat: string, integer and digest fields. Their
// RFC 8785 canonical JSON is written here directly, rather than by
// encoding/json followed by a generic canonicaliser, which cost most of an
// append's CPU time. The output is byte for byte what
// jcs.Transform(json.Marshal(subject)) gives (TestCanonicalSubject checks
// it): keys sorted, fields with omitempty left out when empty, strings as
// encoding/json sees them (each invalid UTF-8 byte read as U+FFFD) written
// with RFC 8785's escapes, integers in decimal.

// field is one member of a subject's JSON object.
type field struct {
	key  string
	kind byte // 's' string, 'i' integer, 'n' null
	s    string
	i    int64
}

func str(k, v string) field       { return field{key: k, kind: 's', s: v} }
func num(k string, v int64) field { return field{key: k, kind: 'i', i: v} }

func digestField(k string, d *cas.Digest) field {
	if d == nil {
		return field{key: k, kind: 'n'}
	}
	return str(k, d.String())
}

// subjectFields appends to fs the JSON members of a subject struct, as
// encoding/json would write them, in any order; ok is false for any other
// value.
func subjectFields(v any, fs []field) (_ []field, ok bool) {
	switch s := v.(type) {
	case Artefact:
		fs = append(fs, str("digest", s.Digest.String()), num("size", s.Size), str("name", s.Name), str("media_type", s.MediaType))
		if s.Release != "" {
			fs = append(fs, str("release", s.Release))
		}
		if s.Build != "" {
			fs = append(fs, str("build", s.Build))
		}
	case Bundle:
		fs = append(fs, str("digest", s.Digest.String()), str("listing", s.Listing.String()), num("files", s.Files), num("size", s.Size), str("release", s.Release))
	case Stamp:
		fs = append(fs, str("uid", s.UID), str("reviewed_hash", s.ReviewedHash), str("document", s.Document), str("document_digest", s.DocumentDigest.String()),
			str("pr", s.PR), str("commit", s.Commit), str("approver", s.Approver), str("approved_at", s.ApprovedAt))
	case Signer:
		fs = append(fs, str("action", s.Action), str("key_id", s.KeyID))
		for _, f := range []field{str("public_key", s.PublicKey), str("name", s.Name), str("email", s.Email),
			str("role", s.Role), str("valid_until", s.ValidUntil), str("reason", s.Reason)} {
			if f.s != "" { // omitempty
				fs = append(fs, f)
			}
		}
	case Release:
		fs = append(fs, str("version", s.Version), str("bundle", s.Bundle.String()), str("manifest", s.Manifest.String()), str("key_id", s.KeyID),
			str("meaning", s.Meaning), str("signed_at", s.SignedAt), digestField("previous", s.Previous))
	default:
		return nil, false
	}
	return fs, true
}

// canonicalSubject returns the RFC 8785 canonical JSON of a subject struct;
// ok is false if v is not one.
func canonicalSubject(v any) (b []byte, ok bool) {
	var buf [8]field // the most any subject has, kept off the heap
	fs, ok := subjectFields(v, buf[:0])
	if !ok {
		return nil, false
	}
	// Keys are ASCII, so sorting by bytes is sorting by UTF-16 code units.
	slices.SortFunc(fs, func(a, b field) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	n := 2
	for _, f := range fs {
		n += len(f.key) + len(f.s) + 8
	}
	b = make([]byte, 0, n)
	b = append(b, '{')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = proofs.AppendJSONString(b, f.key, false)
		b = append(b, ':')
		switch f.kind {
		case 's':
			b = proofs.AppendJSONString(b, f.s, false)
		case 'i':
			b = strconv.AppendInt(b, f.i, 10)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}'), true
}
