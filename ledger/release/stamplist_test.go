package release

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
)

// stampedEntries returns entries that StampListText writes as lines.
func stampedEntries(lines []StampLine) []StampedEntry {
	out := make([]StampedEntry, len(lines))
	for i, l := range lines {
		out[i] = StampedEntry{Index: l.Index, Stamp: ledger.Stamp{UID: l.UID, ReviewedHash: l.ReviewedHash}, Digest: l.EntryDigest}
	}
	return out
}

const (
	testReviewedHash = "6c4b7b6b2d5db42a2daad98954c93241341c9c77ae8ca63920ae12295f585fe1"
	testEntryDigest  = "sha256:013fb0e6117055e404a6d5be629d5794000cd19cb41776f13345e67008fa6c35"
)

// TestStampListRoundTrip checks that whatever StampListText writes for
// the gate, ParseStampList reads back: UIDs with spaces, which StrictDoc
// allows, included.
func TestStampListRoundTrip(t *testing.T) {
	h, d := testReviewedHash, testEntryDigest
	tests := []struct {
		name  string
		lines []StampLine // sorted by UID
	}{
		{"empty", nil},
		{"sample", []StampLine{{"REQ-002", h, 14, d}, {"REQ-006", strings.Repeat("a", 32), 15, d}, {"REQ-012", strings.Repeat("0f", 64), 0, d}}},
		{"UIDs with spaces", []StampLine{{"REQ (pump): 1.2/3", h, 7, d}, {"SYS  2", h, 9, d}, {"SYS 1", h, 8, d}}},
		{"largest index", []StampLine{{"REQ-001", h, math.MaxUint64, d}}},
		{"non-ASCII UID", []StampLine{{"ANF-Ü1", h, 3, d}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := stampedEntries(tt.lines)
			slices.Reverse(entries) // StampListText sorts them
			b := StampListText(entries)
			got, err := ParseStampList(b)
			if err != nil {
				t.Fatalf("ParseStampList(%q) = %v", b, err)
			}
			if diff := cmp.Diff(tt.lines, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseStampList(StampListText(lines)) differs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseStampListRefuses checks that ParseStampList refuses what
// StampListText never writes, saying what is wrong.
func TestParseStampListRefuses(t *testing.T) {
	h, d := testReviewedHash, testEntryDigest
	line := func(uid, hash, index, digest string) string {
		return uid + " " + hash + " " + index + " " + digest + "\n"
	}
	tests := []struct{ name, in, want string }{
		// Once read as an empty UID and REVIEWED_HASH at index 7.
		{"padded index without UID", "  007 x\n", "line 1: no UID"},
		{"padded index", line("REQ-001", h, "007", d), "index \"007\" is not a log index in decimal"},
		{"signed index", line("REQ-001", h, "+7", d), "index \"+7\""},
		{"index over 64 bits", line("REQ-001", h, "18446744073709551616", d), "index"},
		{"blank before UID", " " + line("REQ-001", h, "7", d), "has blanks around it"},
		{"two spaces after UID", line("REQ-001 ", h, "7", d), "has blanks around it"},
		{"tab-separated", "REQ-001\t" + h + "\t7\t" + d + "\n", "too few fields"},
		{"three fields", "REQ-001 " + h + " 7\n", "line 1: "},
		{"blank line", line("REQ-001", h, "7", d) + "\n", "line 2: too few fields"},
		{"upper-case hash", line("REQ-001", strings.ToUpper(h), "7", d), "reviewed_hash"},
		{"short hash", line("REQ-001", h[:30], "7", d), "reviewed_hash"},
		{"odd hash", line("REQ-001", h[:33], "7", d), "reviewed_hash"},
		{"digest without prefix", line("REQ-001", h, "7", d[len("sha256:"):]), "entry digest"},
		{"upper-case digest", line("REQ-001", h, "7", strings.ToUpper(d)), "entry digest"},
		{"CRLF", strings.TrimSuffix(line("REQ-001", h, "7", d), "\n") + "\r\n", "entry digest"},
		{"no final newline", strings.TrimSuffix(line("REQ-001", h, "7", d), "\n"), "does not end with a newline"},
		{"control character in UID", line("REQ\x7f001", h, "7", d), "control character"},
		{"UID not UTF-8", line("REQ-\xff", h, "7", d), "not UTF-8"},
		{"unsorted", line("REQ-002", h, "7", d) + line("REQ-001", h, "8", d), "line 2: UID \"REQ-001\" is not after \"REQ-002\""},
		{"repeated UID", line("REQ-001", h, "7", d) + line("REQ-001", h, "8", d), "line 2: UID \"REQ-001\" is not after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := ParseStampList([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || lines != nil {
				t.Errorf("ParseStampList(%q) = %v, %v; want no lines and an error containing %q", tt.in, lines, err, tt.want)
			}
		})
	}
}

// FuzzParseStampList checks that ParseStampList accepts only what
// StampListText writes: an accepted list, written again from its lines,
// is the input byte for byte, with UIDs each once and fields a stamp entry
// could hold; a refused one yields no lines.
func FuzzParseStampList(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := ParseStampList(b)
		if err != nil {
			if lines != nil {
				t.Fatalf("ParseStampList(%q) failed (%v) but returned %v", b, err, lines)
			}
			return
		}
		if got := StampListText(stampedEntries(lines)); !bytes.Equal(got, b) {
			t.Fatalf("ParseStampList(%q) = %+v, which StampListText writes as %q", b, lines, got)
		}
		for i, l := range lines {
			if i > 0 && lines[i-1].UID >= l.UID {
				t.Fatalf("ParseStampList(%q): UID %q after %q", b, l.UID, lines[i-1].UID)
			}
			if l.UID == "" || strings.TrimSpace(l.UID) != l.UID || !utf8.ValidString(l.UID) {
				t.Fatalf("ParseStampList(%q): UID %q", b, l.UID)
			}
			if h, err := evidence.NormaliseReviewedHash(l.ReviewedHash); err != nil || h != l.ReviewedHash {
				t.Fatalf("ParseStampList(%q): reviewed_hash %q", b, l.ReviewedHash)
			}
			if dg, err := cas.ParseDigest(l.EntryDigest); err != nil || dg.String() != l.EntryDigest {
				t.Fatalf("ParseStampList(%q): entry digest %q", b, l.EntryDigest)
			}
		}
	})
}
