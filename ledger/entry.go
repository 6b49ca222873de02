package ledger

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gowebpki/jcs"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
)

// MaxEntrySize is the largest entry, in canonical JSON bytes, the log accepts:
// 64 KiB less one, so that a C2SP tlog-tiles entry bundle can state every
// entry's length in its 16 bits.
const MaxEntrySize = 64<<10 - 1

// EntryVersion is the entry format version this package writes and reads.
const EntryVersion = 1

// TimeFormat is the layout of an entry's logged_at: RFC 3339 in UTC with
// microseconds, fixed width so that entries sort and compare as text.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// ErrInvalidEntry reports an entry or claim that breaks the format.
var ErrInvalidEntry = errors.New("invalid entry")

// Kind names what an entry records.
type Kind string

// The entry kinds of DESIGN §3.
const (
	KindArtefact Kind = "artefact" // one evidence file
	KindBundle   Kind = "bundle"   // a whole evidence bundle, by canonical digest
	KindStamp    Kind = "stamp"    // a REVIEWED_HASH approval of a requirement
	KindSigner   Kind = "signer"   // a signer's enrolment or revocation
	KindRelease  Kind = "release"  // a signed release-record manifest
)

// kinds lists every kind, in the order documentation shows them.
var kinds = [...]Kind{KindArtefact, KindBundle, KindStamp, KindSigner, KindRelease}

// Kinds returns every kind, in the order documentation shows them.
func Kinds() []Kind { return kinds[:] }

// ParseKind checks that s names a kind.
func ParseKind(s string) (Kind, error) {
	for _, k := range kinds {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown kind %q (want one of %s)", truncate(s), strings.Join(names, ", "))
}

// Artefact is the subject of an artefact entry: one evidence file.
type Artefact struct {
	Digest    cas.Digest `json:"digest"`
	Size      int64      `json:"size"`
	Name      string     `json:"name"`
	MediaType string     `json:"media_type"`
	Release   string     `json:"release,omitempty"`
	Build     string     `json:"build,omitempty"`
}

// Bundle is the subject of a bundle entry: an evidence bundle identified by
// its canonical digest (the SHA-256 of its listing).
type Bundle struct {
	Digest  cas.Digest `json:"digest"`
	Listing cas.Digest `json:"listing"`
	Files   int64      `json:"files"`
	Size    int64      `json:"size"`
	Release string     `json:"release"`
}

// Stamp is the subject of a stamp entry: a REVIEWED_HASH approval.
type Stamp struct {
	UID            string     `json:"uid"`
	ReviewedHash   string     `json:"reviewed_hash"`
	Document       string     `json:"document"`
	DocumentDigest cas.Digest `json:"document_digest"`
	PR             string     `json:"pr"`
	Commit         string     `json:"commit"`
	Approver       string     `json:"approver"`
	ApprovedAt     string     `json:"approved_at"`
}

// Signer is the subject of a signer entry: an enrolment or revocation of a
// signing key. An enrolment binds the key id to one person (name, email),
// with a role and an optional end of validity; a revocation gives a
// reason. Key ids are "sha256:" and the hex SHA-256 of the DER public key.
type Signer struct {
	Action     string `json:"action"` // SignerEnroll or SignerRevoke
	KeyID      string `json:"key_id"`
	PublicKey  string `json:"public_key,omitempty"` // PEM; enrolments only
	Name       string `json:"name,omitempty"`
	Email      string `json:"email,omitempty"`
	Role       string `json:"role,omitempty"`
	ValidUntil string `json:"valid_until,omitempty"` // RFC 3339 UTC; empty: no end
	Reason     string `json:"reason,omitempty"`      // why; required for revocations
}

// Signer actions.
const (
	SignerEnroll = "enroll"
	SignerRevoke = "revoke"
)

// Release is the subject of a release entry: a signed release record.
type Release struct {
	Version  string      `json:"version"`
	Bundle   cas.Digest  `json:"bundle"`
	Manifest cas.Digest  `json:"manifest"`
	KeyID    string      `json:"key_id"`
	Meaning  string      `json:"meaning"`
	SignedAt string      `json:"signed_at"`
	Previous *cas.Digest `json:"previous"`
}

// Claim is what an appender asks the log to record: a kind and its subject.
// Two appends of the same claim yield one entry.
type Claim struct {
	Kind    Kind
	Subject any // one of the subject structs, or json.RawMessage
}

// Entry is a decoded log entry.
type Entry struct {
	V        int             `json:"v"`
	Kind     Kind            `json:"kind"`
	Subject  json.RawMessage `json:"subject"`
	LoggedAt string          `json:"logged_at"`
	LoggedBy string          `json:"logged_by"`
}

// Term is one search-index key an entry is found by.
type Term struct {
	Field string // "digest", "kind", "release", "uid" or "key_id"
	Value string
}

// prepared is a validated claim in canonical form, ready to be stamped with
// the time and the appender and become an entry.
type prepared struct {
	kind    Kind
	subject []byte // canonical JSON
	claim   [32]byte
	terms   []Term
	blobs   []blobRef
	by      string
}

type blobRef struct {
	digest cas.Digest
	size   int64 // -1 when the entry does not state it
}

var versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// ValidateVersion checks a release version of the form vX.Y.Z (with an
// optional pre-release suffix such as v1.2.0-rc.1).
func ValidateVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("release version %q is not of the form vX.Y.Z", truncate(v))
	}
	return nil
}

// ValidateAppender checks an appender name (a token name): 1 to 128
// characters from letters, digits and ._:@/-, starting with a letter or digit.
func ValidateAppender(by string) error {
	if !validAppender(by) {
		return fmt.Errorf("appender name %q must be 1-128 letters, digits or ._:@/- starting with a letter or digit", truncate(by))
	}
	return nil
}

// validAppender reports whether by matches
// ^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$, checked by hand because every
// append checks it and a regular expression cost a tenth of preparing one.
func validAppender(by string) bool {
	if by == "" || len(by) > 128 {
		return false
	}
	for i := 0; i < len(by); i++ {
		switch c := by[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && strings.IndexByte("._:@/-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func prepare(c Claim, by string) (*prepared, error) {
	if _, err := ParseKind(string(c.Kind)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if err := ValidateAppender(by); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	raw, ok := c.Subject.(json.RawMessage)
	var typed []any
	switch c.Subject.(type) {
	case Artefact, *Artefact, Bundle, *Bundle, Stamp, *Stamp, Signer, *Signer, Release, *Release:
		typed = []any{c.Subject}
	default:
		if !ok {
			b, err := json.Marshal(c.Subject)
			if err != nil {
				return nil, fmt.Errorf("%w: encoding %s subject: %v", ErrInvalidEntry, c.Kind, err)
			}
			raw = b
		}
	}
	if len(raw) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %s subject is %d bytes, over the %d-byte entry limit", ErrInvalidEntry, c.Kind, len(raw), MaxEntrySize)
	}
	p := &prepared{kind: c.Kind, by: by}
	var err error
	p.terms, p.blobs, p.subject, err = checkSubject(c.Kind, raw, typed...)
	if err != nil {
		return nil, err
	}
	p.claim = claimDigest(c.Kind, p.subject)
	// The largest timestamp and the appender name bound the final size.
	if n := entrySize(p.kind, TimeFormat, by, p.subject); n > MaxEntrySize {
		return nil, fmt.Errorf("%w: %s entry would be %d bytes, over the %d-byte limit", ErrInvalidEntry, c.Kind, n, MaxEntrySize)
	}
	return p, nil
}

// cost estimates what the entry adds to a commit: the entry itself, its
// claim and index rows, and its tree hashes.
func (p *prepared) cost() int { return 2*len(p.subject) + len(p.by) + 512 }

// CheckClaim reports whether the claim, by the named appender, is well
// formed, without looking at the store: what Append checks before it
// looks for the blobs the claim refers to.
func CheckClaim(c Claim, by string) error {
	_, err := prepare(c, by)
	return err
}

// claimDigest identifies a claim: SHA-256 of the canonical JSON of the entry
// without logged_at and logged_by.
func claimDigest(k Kind, subject []byte) [32]byte {
	var buf [1024]byte // enough for most claims, without a heap allocation
	b := append(buf[:0], `{"kind":"`...)
	b = append(b, k...)
	b = append(b, `","subject":`...)
	b = append(b, subject...)
	b = append(b, `,"v":1}`...)
	return sha256.Sum256(b)
}

// encodeEntry writes the RFC 8785 canonical JSON of an entry. The keys are
// already in canonical order, kind and the timestamp need no escaping, the
// appender name is validated to need none, and subject is canonical.
func encodeEntry(k Kind, loggedAt, by string, subject []byte) []byte {
	b := make([]byte, 0, len(subject)+len(by)+96)
	b = append(b, `{"kind":"`...)
	b = append(b, k...)
	b = append(b, `","logged_at":"`...)
	b = append(b, loggedAt...)
	b = append(b, `","logged_by":"`...)
	b = append(b, by...)
	b = append(b, `","subject":`...)
	b = append(b, subject...)
	b = append(b, `,"v":1}`...)
	return b
}

// entrySize is len(encodeEntry(k, loggedAt, by, subject)).
func entrySize(k Kind, loggedAt, by string, subject []byte) int {
	return len(`{"kind":"","logged_at":"","logged_by":"","subject":,"v":1}`) + len(k) + len(loggedAt) + len(by) + len(subject)
}

// ParseEntry decodes and validates entry bytes as stored in the log: at most
// MaxEntrySize, RFC 8785 canonical, version 1, a known kind with a valid
// subject, a UTC timestamp and an appender name.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrInvalidEntry, len(b), MaxEntrySize)
	}
	canon, err := jcs.Transform(b)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: not JSON: %v", ErrInvalidEntry, err)
	}
	if !bytes.Equal(canon, b) {
		return Entry{}, fmt.Errorf("%w: not in RFC 8785 canonical form", ErrInvalidEntry)
	}
	var e Entry
	if err := decodeStrict(b, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if e.V != EntryVersion {
		return Entry{}, fmt.Errorf("%w: version %d, want %d", ErrInvalidEntry, e.V, EntryVersion)
	}
	if _, err := ParseKind(string(e.Kind)); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if t, err := time.Parse(TimeFormat, e.LoggedAt); err != nil || t.Format(TimeFormat) != e.LoggedAt {
		return Entry{}, fmt.Errorf("%w: logged_at %q is not a UTC time of the form %s", ErrInvalidEntry, truncate(e.LoggedAt), TimeFormat)
	}
	if err := ValidateAppender(e.LoggedBy); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	_, _, canon, serr := checkSubject(e.Kind, e.Subject)
	if serr != nil {
		return Entry{}, serr
	}
	if !bytes.Equal(canon, e.Subject) {
		return Entry{}, fmt.Errorf("%w: %s subject is not in its canonical form (exact field names, no empty optional fields, normalised values)", ErrInvalidEntry, e.Kind)
	}
	return e, nil
}

// claim returns the digest identifying the entry's claim.
func (e Entry) claim() [32]byte { return claimDigest(e.Kind, e.Subject) }

// Terms returns the search-index terms of the entry.
func (e Entry) Terms() []Term {
	terms, _, _, _ := checkSubject(e.Kind, e.Subject)
	return terms
}

// DecodeSubject decodes the entry's subject into v, one of the subject structs.
func (e Entry) DecodeSubject(v any) error {
	return decodeStrict(e.Subject, v)
}

// decodeStrict decodes stored entries and their subjects, refusing unknown
// fields and trailing data. Their text is RFC 8785 canonical (ParseEntry
// checks it), so it repeats no key and is UTF-8; client input goes
// through strictjson.Decode instead, which checks both at a cost.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// maxJSONInt is the largest integer RFC 8785 represents exactly (it writes
// numbers as IEEE 754 doubles).
const maxJSONInt = 1<<53 - 1

// checkSubject validates a kind's subject and returns its search terms, the
// blobs it refers to, and its canonical form: the RFC 8785 JSON of the
// decoded, normalised subject. Spelling a subject differently (field-name
// case, empty optional fields, media-type case, key order, white space)
// yields the same canonical form, and so the same claim.
//
// A subject already decoded (typed: one of the subject structs, as Append's
// callers in this module pass it) is checked as it is, sparing a JSON round
// trip; raw is then ignored.
func checkSubject(k Kind, raw []byte, typed ...any) (terms []Term, blobs []blobRef, canon []byte, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s subject: %s", ErrInvalidEntry, k, fmt.Sprintf(format, args...))
	}
	var normalised any
	defer func() {
		if err != nil {
			terms, blobs, canon = nil, nil, nil
			return
		}
		if c, ok := canonicalSubject(normalised); ok {
			canon = c
			return
		}
		b, merr := json.Marshal(normalised)
		if merr == nil {
			canon, merr = jcs.Transform(b)
		}
		if merr != nil {
			terms, blobs, canon, err = nil, nil, nil, bad("canonicalising: %v", merr)
		}
	}()
	terms = []Term{{"kind", string(k)}}
	switch k {
	case KindArtefact:
		var s Artefact
		if err := decodeSubject(raw, typed, &s); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if s.Digest.IsZero() {
			return nil, nil, nil, bad("missing digest")
		}
		if s.Size < 0 || s.Size > maxJSONInt {
			return nil, nil, nil, bad("size %d is out of range", s.Size)
		}
		if err := checkText("name", s.Name, 1024); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if s.MediaType == "" {
			return nil, nil, nil, bad("missing media_type: give the artefact's MIME type, such as application/octet-stream")
		}
		if !plainMediaType(s.MediaType) {
			mt, params, err := mime.ParseMediaType(s.MediaType)
			if err != nil {
				return nil, nil, nil, bad("media_type %q: %v", truncate(s.MediaType), err)
			}
			s.MediaType = mime.FormatMediaType(mt, params)
		}
		if s.Release != "" {
			if err := ValidateVersion(s.Release); err != nil {
				return nil, nil, nil, bad("%v", err)
			}
			terms = append(terms, Term{"release", s.Release})
		}
		if s.Build != "" {
			if err := checkText("build", s.Build, 1024); err != nil {
				return nil, nil, nil, bad("%v", err)
			}
		}
		terms = append(terms, Term{"digest", s.Digest.String()})
		blobs = append(blobs, blobRef{s.Digest, s.Size})
		normalised = s
	case KindBundle:
		var s Bundle
		if err := decodeSubject(raw, typed, &s); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if s.Digest.IsZero() || s.Listing.IsZero() {
			return nil, nil, nil, bad("missing digest or listing")
		}
		if s.Files < 1 || s.Size < 0 || s.Files > maxJSONInt || s.Size > maxJSONInt {
			return nil, nil, nil, bad("files %d and size %d must be at least 1 and 0", s.Files, s.Size)
		}
		if err := ValidateVersion(s.Release); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		terms = append(terms, Term{"release", s.Release}, Term{"digest", s.Digest.String()})
		if s.Listing != s.Digest {
			terms = append(terms, Term{"digest", s.Listing.String()})
		}
		blobs = append(blobs, blobRef{s.Listing, -1})
		normalised = s
	case KindStamp:
		var s Stamp
		if err := decodeSubject(raw, typed, &s); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		for _, f := range []struct{ name, v string }{{"uid", s.UID}, {"document", s.Document}, {"pr", s.PR}, {"commit", s.Commit}, {"approver", s.Approver}} {
			if err := checkText(f.name, f.v, 1024); err != nil {
				return nil, nil, nil, bad("%v", err)
			}
		}
		h := strings.ToLower(s.ReviewedHash)
		if _, err := hex.DecodeString(h); err != nil || len(h) < 32 || len(h) > 128 {
			return nil, nil, nil, bad("reviewed_hash %q is not 32 to 128 hex digits", truncate(s.ReviewedHash))
		}
		s.ReviewedHash = h
		if err := checkTime("approved_at", s.ApprovedAt); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if s.DocumentDigest.IsZero() {
			return nil, nil, nil, bad("missing document_digest")
		}
		terms = append(terms, Term{"uid", s.UID}, Term{"digest", s.DocumentDigest.String()})
		blobs = append(blobs, blobRef{s.DocumentDigest, -1})
		normalised = s
	case KindSigner:
		var s Signer
		if err := decodeSubject(raw, typed, &s); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if err := checkKeyID(s.KeyID); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		switch s.Action {
		case SignerEnroll:
			for _, f := range []struct{ name, v string }{{"public_key", s.PublicKey}, {"name", s.Name}, {"email", s.Email}, {"role", s.Role}} {
				if f.name == "public_key" {
					if f.v == "" || len(f.v) > 4096 || !utf8.ValidString(f.v) {
						return nil, nil, nil, bad("public_key must be a PEM block of at most 4096 bytes")
					}
					continue
				}
				if err := checkText(f.name, f.v, 256); err != nil {
					return nil, nil, nil, bad("%v", err)
				}
			}
			if err := checkPublicKey(s.PublicKey, s.KeyID); err != nil {
				return nil, nil, nil, bad("%v", err)
			}
			if s.ValidUntil != "" {
				if err := checkTime("valid_until", s.ValidUntil); err != nil {
					return nil, nil, nil, bad("%v", err)
				}
			}
			if s.Reason != "" {
				if err := checkText("reason", s.Reason, 1024); err != nil {
					return nil, nil, nil, bad("%v", err)
				}
			}
		case SignerRevoke:
			if s.PublicKey != "" || s.Name != "" || s.Email != "" || s.Role != "" || s.ValidUntil != "" {
				return nil, nil, nil, bad("a revocation names only the key_id and the reason")
			}
			if err := checkText("reason", s.Reason, 1024); err != nil {
				return nil, nil, nil, bad("%v (say why the key is revoked)", err)
			}
		default:
			return nil, nil, nil, bad("action %q must be %s or %s", truncate(s.Action), SignerEnroll, SignerRevoke)
		}
		terms = append(terms, Term{"key_id", s.KeyID})
		normalised = s
	case KindRelease:
		var s Release
		if err := decodeSubject(raw, typed, &s); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if err := ValidateVersion(s.Version); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if s.Bundle.IsZero() || s.Manifest.IsZero() {
			return nil, nil, nil, bad("missing bundle or manifest digest")
		}
		if err := checkKeyID(s.KeyID); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if err := checkText("meaning", s.Meaning, 64); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		if err := checkTime("signed_at", s.SignedAt); err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		terms = append(terms, Term{"release", s.Version}, Term{"digest", s.Bundle.String()}, Term{"digest", s.Manifest.String()}, Term{"key_id", s.KeyID})
		blobs = append(blobs, blobRef{s.Manifest, -1})
		normalised = s
	default:
		return nil, nil, nil, bad("unknown kind")
	}
	return terms, blobs, nil, nil
}

// decodeSubject sets *dst from the typed subject if there is one of its
// type, or else decodes raw strictly (quickly, when decodeFlat can).
func decodeSubject[T any](raw []byte, typed []any, dst *T) error {
	if len(typed) == 1 {
		switch t := typed[0].(type) {
		case T:
			*dst = t
			return nil
		case *T:
			if t != nil {
				*dst = *t
				return nil
			}
		}
		return fmt.Errorf("subject is a %T, not a %T", typed[0], *dst)
	}
	if v := *dst; decodeFlat(raw, &v) {
		*dst = v
		return nil
	}
	return strictjson.Decode(raw, dst)
}

// plainMediaType reports whether t is a media type that parsing and
// formatting again (mime.ParseMediaType, mime.FormatMediaType) leaves as
// it is: type "/" subtype, both tokens in lower case, no parameters. Most
// are, and the round trip cost a tenth of preparing an append.
func plainMediaType(t string) bool {
	slash := strings.IndexByte(t, '/')
	if slash <= 0 || slash == len(t)-1 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if i != slash && (c <= ' ' || c >= 0x7f || 'A' <= c && c <= 'Z' || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0) {
			return false
		}
	}
	return true
}

// checkKeyID checks a signer key id: "sha256:" and 64 lowercase hex digits.
func checkKeyID(id string) error {
	if _, err := cas.ParseDigest(id); err != nil {
		return fmt.Errorf("key_id %q is not a key id (sha256:<64 hex digits of the public key's SHA-256>)", truncate(id))
	}
	return nil
}

// checkPublicKey checks that pemKey is one PEM "PUBLIC KEY" block holding
// a PKIX public key whose DER SHA-256 is keyID.
func checkPublicKey(pemKey, keyID string) error {
	block, rest := pem.Decode([]byte(pemKey))
	if block == nil || block.Type != "PUBLIC KEY" || strings.TrimSpace(string(rest)) != "" {
		return errors.New("public_key must be one PEM \"PUBLIC KEY\" block")
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		return fmt.Errorf("public_key: %v", err)
	}
	if sum := sha256.Sum256(block.Bytes); "sha256:"+hex.EncodeToString(sum[:]) != keyID {
		return fmt.Errorf("key_id %s is not the SHA-256 of the public key (sha256:%x)", truncate(keyID), sum)
	}
	return nil
}

// checkTime checks an RFC 3339 UTC time such as 2026-11-25T10:00:00Z.
func checkTime(field, s string) error {
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
		return fmt.Errorf("%s %q is not an RFC 3339 UTC time such as 2026-11-25T10:00:00Z", field, truncate(s))
	}
	return nil
}

func checkText(field, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("missing %s", field)
	case len(s) > max:
		return fmt.Errorf("%s is %d bytes, over %d", field, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %s has a control character", field, strconv.Quote(truncate(s)))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// MediaType guesses a file's media type from its extension, for artefact
// entries: a few evidence formats by name, then the system table, then
// application/octet-stream.
func MediaType(path string) string {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".xml":
		return "application/xml"
	case ".json":
		return "application/json"
	case ".txt", "":
		if strings.EqualFold(filepath.Base(path), "SHA256SUMS") || ext == ".txt" {
			return "text/plain"
		}
	case ".exe", ".msi":
		return "application/vnd.microsoft.portable-executable"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		if mt, params, err := mime.ParseMediaType(t); err == nil {
			return mime.FormatMediaType(mt, params)
		}
	}
	return "application/octet-stream"
}
