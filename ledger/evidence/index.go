package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
)

// ErrInvalidIndex is wrapped by every ParseIndex error.
var ErrInvalidIndex = errors.New("invalid index.json")

// IndexFile is the name of the requirement index at a bundle's root.
const IndexFile = "index.json"

// MaxIndexSize bounds an index.json.
const MaxIndexSize = 64 << 20

// Requirement is one entry of a bundle's index.json: a requirement UID and
// its review state. Fields other than these are ignored.
type Requirement struct {
	UID          string   `json:"uid"`
	State        string   `json:"state"`
	ReviewedHash string   `json:"reviewed_hash,omitempty"`
	Verifies     []string `json:"verifies,omitempty"`
	Document     string   `json:"document,omitempty"`
	Title        string   `json:"title,omitempty"`
	// Regulated is false only when the index says "regulated": false.
	Regulated bool `json:"regulated"`
	// Suspect is set by "suspect": true or by the state "suspect".
	Suspect bool `json:"suspect,omitempty"`
}

// Index is a parsed index.json.
type Index struct {
	Requirements []Requirement
}

// Regulated returns the regulated requirements, in index order.
func (x Index) Regulated() []Requirement {
	var out []Requirement
	for _, r := range x.Requirements {
		if r.Regulated {
			out = append(out, r)
		}
	}
	return out
}

// ParseIndex parses an index.json: either an object with a "requirements"
// list or the list itself, of objects with "uid" (required), "state",
// "reviewed_hash" (hex, or null), "verifies" (a list of test names),
// "regulated" (default true), "suspect", "document" and "title"; other
// fields are ignored. UIDs must be unique. Errors name the entry.
func ParseIndex(b []byte) (Index, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidIndex, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxIndexSize {
		return Index{}, bad("%d bytes is over the %d-byte limit", len(b), MaxIndexSize)
	}
	trimmed := bytes.TrimSpace(b)
	if err := strictjson.Check(trimmed); err != nil {
		return Index{}, bad("%v", err)
	}
	var raw []json.RawMessage
	switch {
	case len(trimmed) == 0:
		return Index{}, bad("empty file; want {\"requirements\": [{\"uid\": ..., \"state\": ...}, ...]}")
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raw); err != nil {
			return Index{}, bad("not JSON: %v", err)
		}
	default:
		var top struct {
			Requirements *[]json.RawMessage `json:"requirements"`
		}
		if err := json.Unmarshal(trimmed, &top); err != nil {
			return Index{}, bad("not JSON: %v", err)
		}
		if top.Requirements == nil {
			return Index{}, bad(`no "requirements" list; want {"requirements": [{"uid": ..., "state": ...}, ...]}`)
		}
		raw = *top.Requirements
	}
	seen := make(map[string]int)
	x := Index{Requirements: make([]Requirement, 0, len(raw))}
	for i, m := range raw {
		var e struct {
			UID          *string  `json:"uid"`
			State        string   `json:"state"`
			ReviewedHash *string  `json:"reviewed_hash"`
			Verifies     []string `json:"verifies"`
			Document     string   `json:"document"`
			Title        string   `json:"title"`
			Regulated    *bool    `json:"regulated"`
			Suspect      bool     `json:"suspect"`
		}
		if err := json.Unmarshal(m, &e); err != nil {
			return Index{}, bad("requirement %d: %v", i+1, err)
		}
		if e.UID == nil || strings.TrimSpace(*e.UID) == "" {
			return Index{}, bad(`requirement %d has no "uid"`, i+1)
		}
		uid := *e.UID
		if strings.TrimSpace(uid) != uid || strings.ContainsAny(uid, "\x00\t\r\n") {
			return Index{}, bad("requirement %d: uid %q has blanks around it or control characters", i+1, uid)
		}
		if j, ok := seen[uid]; ok {
			return Index{}, bad("requirement %d: uid %q is already requirement %d", i+1, uid, j)
		}
		seen[uid] = i + 1
		r := Requirement{UID: uid, State: e.State, Verifies: e.Verifies, Document: e.Document, Title: e.Title,
			Regulated: e.Regulated == nil || *e.Regulated, Suspect: e.Suspect || strings.EqualFold(e.State, "suspect")}
		if e.ReviewedHash != nil && *e.ReviewedHash != "" {
			h, err := NormaliseReviewedHash(*e.ReviewedHash)
			if err != nil {
				return Index{}, bad("%s: %v", uid, err)
			}
			r.ReviewedHash = h
		}
		x.Requirements = append(x.Requirements, r)
	}
	return x, nil
}

// NormaliseReviewedHash checks a REVIEWED_HASH (32 to 128 hex digits) and
// returns it in lower case.
func NormaliseReviewedHash(h string) (string, error) {
	l := strings.ToLower(h)
	if len(l) < 32 || len(l) > 128 {
		return "", fmt.Errorf("REVIEWED_HASH %q is %d characters, want 32 to 128 hex digits", truncateText(h), len(h))
	}
	if _, err := hex.DecodeString(l); err != nil || len(l)%2 != 0 {
		return "", fmt.Errorf("REVIEWED_HASH %q is not hex", truncateText(h))
	}
	return l, nil
}

func truncateText(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
