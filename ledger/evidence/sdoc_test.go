package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	sdocHashA = "402ad84047eebcd326ad59ac1bca7266155f457fe0cfc3e8c81b173ee2490a1f"
	sdocHashB = "6c4b7b6b2d5db42a2daad98954c93241341c9c77ae8ca63920ae12295f585fe1"
)

func TestParseSDoc(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want SDocDocument
	}{{
		name: "minimal",
		in: `[DOCUMENT]
TITLE: Pump

[REQUIREMENT]
UID: REQ-001
TITLE: Rate limits
STATEMENT: The pump shall limit the rate.
REVIEWED_HASH: ` + sdocHashA + `
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{{
			Type: "REQUIREMENT", UID: "REQ-001", ReviewedHash: sdocHashA, Title: "Rate limits", Line: 4,
			Fields: map[string]string{"UID": "REQ-001", "TITLE": "Rate limits", "STATEMENT": "The pump shall limit the rate.", "REVIEWED_HASH": sdocHashA},
		}}},
	}, {
		name: "no nodes",
		in:   "[DOCUMENT]\nTITLE: Empty\n",
		want: SDocDocument{Title: "Empty"},
	}, {
		name: "multi-line fields keep their lines as written",
		in: `[DOCUMENT]
TITLE: Pump

[REQUIREMENT]
UID: REQ-001
STATEMENT: >>>
First line.

  Indented, with [LINK: REQ-002] and trailing blanks.  
[REQUIREMENT]
UID: NOT-A-FIELD
  <<<
STATEMENT: >>> is not a marker here
<<<
COMMENT: >>>
<<<
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{{
			Type: "REQUIREMENT", UID: "REQ-001", Line: 4,
			Fields: map[string]string{
				"UID":       "REQ-001",
				"STATEMENT": "First line.\n\n  Indented, with [LINK: REQ-002] and trailing blanks.  \n[REQUIREMENT]\nUID: NOT-A-FIELD\n  <<<\nSTATEMENT: >>> is not a marker here",
				"COMMENT":   "",
			},
		}}},
	}, {
		name: "single-line values are trimmed; >>> with text is a single-line value",
		in:   "[DOCUMENT]  \nTITLE:   Pump  \n\n[REQUIREMENT] \nUID:\tREQ-001\t\nSTATEMENT: >>> not multi-line\n",
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{{
			Type: "REQUIREMENT", UID: "REQ-001", Line: 4,
			Fields: map[string]string{"UID": "REQ-001", "STATEMENT": ">>> not multi-line"},
		}}},
	}, {
		name: "older section syntax, nested, with free text",
		in: `[DOCUMENT]
TITLE: Records

[FREETEXT]
Free text is skipped, even [REQUIREMENT] and
UID: LOOKS-LIKE-A-FIELD
[/FREETEXT]

[SECTION]
TITLE: Audit trail

[SECTION]
UID: SECT-EXPORT
TITLE: Export

[REQUIREMENT]
UID: REQ-003
TITLE: Audit log export
STATEMENT: Export it.

[/SECTION]

[/SECTION]

[SECTION]
TITLE: Signatures

[REQUIREMENT]
UID: REQ-009
STATEMENT: Sign it.

[/SECTION]
`,
		want: SDocDocument{Title: "Records", Nodes: []SDocNode{
			{Type: "SECTION", UID: "SECT-EXPORT", Title: "Export", Line: 12, Fields: map[string]string{"UID": "SECT-EXPORT", "TITLE": "Export"}},
			{Type: "REQUIREMENT", UID: "REQ-003", Title: "Audit log export", Line: 16, Fields: map[string]string{"UID": "REQ-003", "TITLE": "Audit log export", "STATEMENT": "Export it."}},
			{Type: "REQUIREMENT", UID: "REQ-009", Line: 28, Fields: map[string]string{"UID": "REQ-009", "STATEMENT": "Sign it."}},
		}},
	}, {
		name: "composite nodes, sections included",
		in: `[DOCUMENT]
TITLE: Alarms

[[SECTION]]
TITLE: Delivery alarms

[[REQUIREMENT]]
UID: REQ-002
TITLE: Occlusion alarm
STATEMENT: Alarm within 30 s.
REVIEWED_HASH: ` + sdocHashB + `

[REQUIREMENT]
UID: REQ-002.1
STATEMENT: Detect the occlusion.

[[/REQUIREMENT]]

[[SECTION]]
UID: SECT-POWER
TITLE: Power

[[/SECTION]]
[[/SECTION]]
`,
		want: SDocDocument{Title: "Alarms", Nodes: []SDocNode{
			{Type: "REQUIREMENT", UID: "REQ-002", ReviewedHash: sdocHashB, Title: "Occlusion alarm", Line: 7,
				Fields: map[string]string{"UID": "REQ-002", "TITLE": "Occlusion alarm", "STATEMENT": "Alarm within 30 s.", "REVIEWED_HASH": sdocHashB}},
			{Type: "REQUIREMENT", UID: "REQ-002.1", Line: 13, Fields: map[string]string{"UID": "REQ-002.1", "STATEMENT": "Detect the occlusion."}},
			{Type: "SECTION", UID: "SECT-POWER", Title: "Power", Line: 19, Fields: map[string]string{"UID": "SECT-POWER", "TITLE": "Power"}},
		}},
	}, {
		name: "older composite syntax",
		in: `[DOCUMENT]
TITLE: Pump

[COMPOSITE_REQUIREMENT]
UID: REQ-010
STATEMENT: Parent.

[REQUIREMENT]
UID: REQ-011
STATEMENT: Child.

[/COMPOSITE_REQUIREMENT]
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{
			{Type: "REQUIREMENT", UID: "REQ-010", Line: 4, Fields: map[string]string{"UID": "REQ-010", "STATEMENT": "Parent."}},
			{Type: "REQUIREMENT", UID: "REQ-011", Line: 8, Fields: map[string]string{"UID": "REQ-011", "STATEMENT": "Child."}},
		}},
	}, {
		name: "grammar, custom node types, text nodes, relations, nodes without UID",
		in: `[DOCUMENT]
MID: 27023bf63c414fd998437961c77a0e2e
TITLE: Pump
UID: DOC-PUMP
OPTIONS:
  MARKUP: RST
  VIEW_STYLE: Table
METADATA:
  owner: Jane Roe

[GRAMMAR]
ELEMENTS:
- TAG: HAZARD
  FIELDS:
  - TITLE: UID
    TYPE: String
    REQUIRED: True
  - TITLE: SEVERITY
    TYPE: SingleChoice(Minor, Critical)
    REQUIRED: True

[TEXT]
STATEMENT: >>>
An introduction without a UID.
<<<

[TEXT]
UID: TXT-SCOPE
STATEMENT: Scope.

[HAZARD]
UID: HAZ-001
SEVERITY: Critical

[RISK_CONTROL_2]
UID: RC-1
TITLE: Clamp
RELATIONS:
- TYPE: Parent
  VALUE: HAZ-001
  ROLE: Mitigates

[DOCUMENT_FROM_FILE]
FILE: common.sdoc
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{
			{Type: "TEXT", UID: "TXT-SCOPE", Line: 27, Fields: map[string]string{"UID": "TXT-SCOPE", "STATEMENT": "Scope."}},
			{Type: "HAZARD", UID: "HAZ-001", Line: 31, Fields: map[string]string{"UID": "HAZ-001", "SEVERITY": "Critical"}},
			{Type: "RISK_CONTROL_2", UID: "RC-1", Title: "Clamp", Line: 35, Fields: map[string]string{
				"UID": "RC-1", "TITLE": "Clamp", "RELATIONS": "- TYPE: Parent\n  VALUE: HAZ-001\n  ROLE: Mitigates"}},
		}},
	}, {
		name: "REVIEWED_HASH is lower-cased; COMMENT may repeat",
		in: `[DOCUMENT]
TITLE: Pump

[REQUIREMENT]
UID: REQ-001
COMMENT: First.
COMMENT: >>>
Second,
on two lines.
<<<
REVIEWED_HASH: ` + strings.ToUpper(sdocHashA) + `
COMMENT: Third.
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{{
			Type: "REQUIREMENT", UID: "REQ-001", ReviewedHash: sdocHashA, Line: 4,
			Fields: map[string]string{"UID": "REQ-001", "COMMENT": "First.\nSecond,\non two lines.\nThird.", "REVIEWED_HASH": strings.ToUpper(sdocHashA)},
		}}},
	}, {
		name: "UID after REVIEWED_HASH; UIDs StrictDoc allows",
		in: `[DOCUMENT]
TITLE: Pump

[REQUIREMENT]
REVIEWED_HASH: 0123456789abcdef0123456789ABCDEF
UID: SRS/PUMP: 1.2 (draft)
[REQUIREMENT]
UID: _é9
`,
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{
			{Type: "REQUIREMENT", UID: "SRS/PUMP: 1.2 (draft)", ReviewedHash: "0123456789abcdef0123456789abcdef", Line: 4,
				Fields: map[string]string{"UID": "SRS/PUMP: 1.2 (draft)", "REVIEWED_HASH": "0123456789abcdef0123456789ABCDEF"}},
			{Type: "REQUIREMENT", UID: "_é9", Line: 7, Fields: map[string]string{"UID": "_é9"}},
		}},
	}, {
		name: "byte order mark, no final newline",
		in:   "\uFEFF[DOCUMENT]\nTITLE: Pump\n\n[REQUIREMENT]\nUID: REQ-001",
		want: SDocDocument{Title: "Pump", Nodes: []SDocNode{
			{Type: "REQUIREMENT", UID: "REQ-001", Line: 4, Fields: map[string]string{"UID": "REQ-001"}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSDoc("test.sdoc", []byte(tt.in))
			if err != nil {
				t.Fatalf("ParseSDoc: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSDoc mismatch (-want +got):\n%s", diff)
			}
			crlf := strings.ReplaceAll(tt.in, "\n", "\r\n")
			got, err = ParseSDoc("test.sdoc", []byte(crlf))
			if err != nil {
				t.Fatalf("ParseSDoc with CRLF: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSDoc with CRLF mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSDocErrors(t *testing.T) {
	const doc = "[DOCUMENT]\nTITLE: Pump\n\n"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `pump.sdoc:1: no [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE`},
		{"blank", "\n\n", `pump.sdoc:1: no [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE`},
		{"text first", "TITLE: Pump\n", `pump.sdoc:1: found "TITLE: Pump" before [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE`},
		{"node first", "\n[REQUIREMENT]\nUID: R\n", `pump.sdoc:2: found [REQUIREMENT] before [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE`},
		{"no title", "[DOCUMENT]\nUID: DOC-1\n\n[TEXT]\nSTATEMENT: x\n", `pump.sdoc:1: [DOCUMENT] has no TITLE field: want "TITLE: ..." among the lines right after it`},
		{"title after blank", "[DOCUMENT]\n\nTITLE: Pump\n", `pump.sdoc:1: [DOCUMENT] has no TITLE field: want "TITLE: ..." among the lines right after it`},
		{"hash on the document", "[DOCUMENT]\nTITLE: Pump\nREVIEWED_HASH: 9f2c1e5d0b7a4c3e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70\n", `pump.sdoc:3: REVIEWED_HASH on the [DOCUMENT] itself: stamps belong to nodes with a UID; move it into the node it approves`},
		{"two documents", doc + "[DOCUMENT]\nTITLE: Again\n", `pump.sdoc:4: a second [DOCUMENT] (the first is at line 1): one .sdoc file holds one document`},
		{"two grammars", doc + "[GRAMMAR]\nELEMENTS:\n- TAG: A\n\n[GRAMMAR]\nIMPORT_FROM_FILE: g.sgra\n", `pump.sdoc:8: a second [GRAMMAR] (the first is at line 4)`},
		{"late grammar", doc + "[TEXT]\nSTATEMENT: x\n\n[GRAMMAR]\nIMPORT_FROM_FILE: g.sgra\n", `pump.sdoc:7: [GRAMMAR] after the first node: it belongs right after the [DOCUMENT] fields`},
		{"not UTF-8", doc + "[REQUIREMENT]\nUID: R\xff1\n", `pump.sdoc:5: not UTF-8: byte 0xff at column 7; save the file as UTF-8`},
		{"latin-1 title", "[DOCUMENT]\nTITLE: Pumpe f\xfcr\n", `pump.sdoc:2: not UTF-8: byte 0xfc at column 15; save the file as UTF-8`},
		{"field after blank line", doc + "[REQUIREMENT]\nUID: REQ-001\n\nSTATEMENT: x\n", `pump.sdoc:7: field STATEMENT is outside any node: a node's fields follow its [TYPE] line with no blank line between them`},
		{"field after close", doc + "[[SECTION]]\nTITLE: S\n[[/SECTION]]\nUID: X\n", `pump.sdoc:7: field UID is outside any node: a node's fields follow its [TYPE] line with no blank line between them`},
		{"prose outside nodes", doc + "Some prose.\n", `pump.sdoc:4: text outside any node: "Some prose."; free text goes in a [TEXT] node's STATEMENT: >>> ... <<<`},
		{"lower-case field", doc + "[REQUIREMENT]\nuid: REQ-001\n", `pump.sdoc:5: malformed field line "uid: REQ-001" in the [REQUIREMENT] at line 4: want "NAME: value" or "NAME: >>>" with NAME in capitals at the start of the line`},
		{"no space after colon", doc + "[REQUIREMENT]\nUID:REQ-001\n", `pump.sdoc:5: malformed field line "UID:REQ-001" in the [REQUIREMENT] at line 4: want "NAME: value" or "NAME: >>>" with NAME in capitals at the start of the line`},
		{"no colon", doc + "[[SECTION]]\nTITLE Alarms\n[[/SECTION]]\n", `pump.sdoc:5: malformed field line "TITLE Alarms" in the [[SECTION]] at line 4: want "NAME: value" or "NAME: >>>" with NAME in capitals at the start of the line`},
		{"indented field", doc + "[REQUIREMENT]\n  UID: REQ-001\n", `pump.sdoc:5: malformed field line "  UID: REQ-001" in the [REQUIREMENT] at line 4: want "NAME: value" or "NAME: >>>" with NAME in capitals at the start of the line`},
		{"stray continuation", doc + "[REQUIREMENT]\nUID: REQ-001\n- TYPE: Parent\n", `pump.sdoc:6: malformed field line "- TYPE: Parent" in the [REQUIREMENT] at line 4: want "NAME: value" or "NAME: >>>" with NAME in capitals at the start of the line`},
		{"field with no value", doc + "[REQUIREMENT]\nUID: REQ-001\nRELATIONS:\nTITLE: x\n", `pump.sdoc:6: field RELATIONS has no value: want "RELATIONS: value", "RELATIONS: >>>" or indented lines after it`},
		{"field with no value at end", doc + "[REQUIREMENT]\nUID: REQ-001\nSTATEMENT:", `pump.sdoc:6: field STATEMENT has no value: want "STATEMENT: value", "STATEMENT: >>>" or indented lines after it`},
		{"empty UID", doc + "[REQUIREMENT]\nUID:\n", `pump.sdoc:5: field UID has no value`},
		{"multi-line UID", doc + "[REQUIREMENT]\nUID: >>>\nREQ-001\n<<<\n", `pump.sdoc:5: UID must be a one-line field: want "UID: value"`},
		{"multi-line hash", doc + "[REQUIREMENT]\nUID: R\nREVIEWED_HASH: >>>\n" + sdocHashA + "\n<<<\n", `pump.sdoc:6: REVIEWED_HASH must be a one-line field: want "REVIEWED_HASH: value"`},
		{"unterminated multi-line", doc + "[REQUIREMENT]\nUID: REQ-001\nSTATEMENT: >>>\nThe pump shall.\n\n[REQUIREMENT]\nUID: REQ-002\n", `pump.sdoc:6: multi-line field STATEMENT is never closed: want a line holding only <<<`},
		{"unterminated free text", doc + "[FREETEXT]\nText.\n", `pump.sdoc:4: [FREETEXT] is never closed: want [/FREETEXT]`},
		{"free text close alone", doc + "[/FREETEXT]\n", `pump.sdoc:4: [/FREETEXT] without a [FREETEXT] before it`},
		{"malformed marker", doc + "[REQUIREMENT\nUID: R\n", `pump.sdoc:4: malformed line "[REQUIREMENT": want a node marker such as [REQUIREMENT], [[SECTION]] or [[/SECTION]], or a field "NAME: value"`},
		{"lower-case marker", doc + "[requirement]\n", `pump.sdoc:4: malformed line "[requirement]": want a node marker such as [REQUIREMENT], [[SECTION]] or [[/SECTION]], or a field "NAME: value"`},
		{"marker with text", doc + "[REQUIREMENT] REQ-001\n", `pump.sdoc:4: malformed line "[REQUIREMENT] REQ-001": want a node marker such as [REQUIREMENT], [[SECTION]] or [[/SECTION]], or a field "NAME: value"`},
		{"anchor outside text", doc + "[ANCHOR: A-1]\n", `pump.sdoc:4: malformed line "[ANCHOR: A-1]": want a node marker such as [REQUIREMENT], [[SECTION]] or [[/SECTION]], or a field "NAME: value"`},
		{"composite document", doc + "[[GRAMMAR]]\n", `pump.sdoc:4: [[GRAMMAR]] cannot be a composite node: want [GRAMMAR]`},
		{"node without fields", doc + "[REQUIREMENT]\n\n[REQUIREMENT]\nUID: R\n", `pump.sdoc:4: the [REQUIREMENT] at line 4 has no fields: want at least one "NAME: value" line right after it`},
		{"section never closed", doc + "[[SECTION]]\nTITLE: A\n\n[[SECTION]]\nTITLE: B\n\n[[/SECTION]]\n", `pump.sdoc:4: [[SECTION]] is never closed: want [[/SECTION]]`},
		{"old section never closed", doc + "[SECTION]\nTITLE: A\n\n[REQUIREMENT]\nUID: R\n", `pump.sdoc:4: [SECTION] is never closed: want [/SECTION]`},
		{"close without open", doc + "[TEXT]\nSTATEMENT: x\n\n[[/SECTION]]\n", `pump.sdoc:7: [[/SECTION]] closes nothing: no [[SECTION]] is open`},
		{"old close without open", doc + "[/SECTION]\n", `pump.sdoc:4: [/SECTION] closes nothing: no [SECTION] is open`},
		{"mixed syntaxes", doc + "[[SECTION]]\nTITLE: A\n\n[/SECTION]\n", `pump.sdoc:7: [/SECTION] found where [[SECTION]] (opened at line 4) must be closed by [[/SECTION]]`},
		{"crossed", doc + "[[SECTION]]\nTITLE: A\n\n[[REQUIREMENT]]\nUID: R\n\n[[/SECTION]]\n[[/REQUIREMENT]]\n", `pump.sdoc:10: [[/SECTION]] found where [[REQUIREMENT]] (opened at line 7) must be closed by [[/REQUIREMENT]]`},
		{"repeated field", doc + "[REQUIREMENT]\nUID: R\nTITLE: A\nSTATEMENT: x\nTITLE: B\n", `pump.sdoc:8: field TITLE given twice in the [REQUIREMENT] at line 4 (first at line 6)`},
		{"repeated UID field", doc + "[REQUIREMENT]\nUID: R\nUID: S\n", `pump.sdoc:6: field UID given twice in the [REQUIREMENT] at line 4 (first at line 5)`},
		{"repeated document title", "[DOCUMENT]\nTITLE: A\nTITLE: B\n", `pump.sdoc:3: field TITLE given twice in the [DOCUMENT] at line 1 (first at line 2)`},
		{"duplicate UID", doc + "[REQUIREMENT]\nUID: REQ-001\n\n[[SECTION]]\nTITLE: S\n\n[TEXT]\nUID: REQ-001\nSTATEMENT: again\n\n[[/SECTION]]\n", `pump.sdoc:10: UID REQ-001 is already the UID of the node at line 4: UIDs must be unique`},
		{"UID with bad characters", doc + "[REQUIREMENT]\nUID: REQ-001!\n", `pump.sdoc:5: UID "REQ-001!" has characters StrictDoc does not allow: want a letter, digit or _ first, then letters, digits, spaces and _ - . / : ( )`},
		{"UID starting with a dash", doc + "[REQUIREMENT]\nUID: -1\n", `pump.sdoc:5: UID "-1" has characters StrictDoc does not allow: want a letter, digit or _ first, then letters, digits, spaces and _ - . / : ( )`},
		{"short hash", doc + "[REQUIREMENT]\nUID: REQ-001\nREVIEWED_HASH: 9f2c1e\n", `pump.sdoc:6: REVIEWED_HASH "9f2c1e" is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)`},
		{"long hash", doc + "[REQUIREMENT]\nUID: REQ-001\nREVIEWED_HASH: " + strings.Repeat("ab", 65) + "\n", `pump.sdoc:6: REVIEWED_HASH "` + strings.Repeat("ab", 30) + `"… is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)`},
		{"not hex", doc + "[REQUIREMENT]\nUID: REQ-001\nREVIEWED_HASH: " + strings.Repeat("g", 64) + "\n", `pump.sdoc:6: REVIEWED_HASH "` + strings.Repeat("g", 60) + `"… is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)`},
		{"odd hash", doc + "[REQUIREMENT]\nUID: REQ-001\nREVIEWED_HASH: " + sdocHashA[:33] + "\n", `pump.sdoc:6: REVIEWED_HASH "` + sdocHashA[:33] + `" is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)`},
		{"prefixed hash", doc + "[REQUIREMENT]\nUID: REQ-001\nREVIEWED_HASH: sha256:" + sdocHashA + "\n", `pump.sdoc:6: REVIEWED_HASH "sha256:` + sdocHashA[:53] + `"… is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)`},
		{"hash without UID", doc + "[REQUIREMENT]\nTITLE: Rate\nREVIEWED_HASH: " + sdocHashA + "\n", `pump.sdoc:6: REVIEWED_HASH on a REQUIREMENT with no UID: a stamp must name its node; add a UID field`},
		{"CRLF error line", strings.ReplaceAll(doc+"[REQUIREMENT]\nUID: R\n\nX: y\n", "\n", "\r\n"), `pump.sdoc:7: field X is outside any node: a node's fields follow its [TYPE] line with no blank line between them`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSDoc("pump.sdoc", []byte(tt.in))
			if err == nil {
				t.Fatalf("ParseSDoc = %+v, want error %q", got, tt.want)
			}
			if !errors.Is(err, ErrInvalidSDoc) {
				t.Errorf("error %v does not wrap ErrInvalidSDoc", err)
			}
			if err.Error() != tt.want {
				t.Errorf("ParseSDoc error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestParseSDocSizeLimit(t *testing.T) {
	b := []byte("[DOCUMENT]\nTITLE: Big\n\n[TEXT]\nSTATEMENT: >>>\n")
	b = append(b, bytes.Repeat([]byte("x"), MaxSDocSize-len(b)-4)...)
	b = append(b, "\n<<<"...)
	if _, err := ParseSDoc("big.sdoc", b); err != nil {
		t.Fatalf("ParseSDoc of exactly MaxSDocSize bytes: %v", err)
	}
	b = append(b, '\n')
	_, err := ParseSDoc("big.sdoc", b)
	want := fmt.Sprintf("big.sdoc: %d bytes is more than the 16 MiB an .sdoc may have", MaxSDocSize+1)
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidSDoc) {
		t.Fatalf("ParseSDoc of MaxSDocSize+1 bytes: error %v, want %s", err, want)
	}
}

// sdocIndex is the part of testdata/bundle/index.json the fixtures must
// agree with.
type sdocIndex struct {
	Requirements []struct {
		UID          string  `json:"uid"`
		Title        string  `json:"title"`
		Regulated    bool    `json:"regulated"`
		State        string  `json:"state"`
		Document     string  `json:"document"`
		ReviewedHash *string `json:"reviewed_hash"`
	} `json:"requirements"`
}

// readSDocTree parses every .sdoc file under dir, keyed by slash path
// relative to dir.
func readSDocTree(t *testing.T, dir string) map[string]SDocDocument {
	t.Helper()
	docs := map[string]SDocDocument{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sdoc") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		doc, err := ParseSDoc(filepath.ToSlash(rel), b)
		if err != nil {
			return err
		}
		docs[filepath.ToSlash(rel)] = doc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// sdocContentHash is the fixtures' REVIEWED_HASH convention: the SHA-256
// of the UID, TITLE and STATEMENT fields as approved.
func sdocContentHash(n SDocNode) string {
	s := sha256.Sum256([]byte("UID: " + n.UID + "\nTITLE: " + n.Fields["TITLE"] + "\nSTATEMENT: " + n.Fields["STATEMENT"] + "\n"))
	return hex.EncodeToString(s[:])
}

// TestSDocFixtures checks that testdata/sdoc agrees with the bundle's
// index.json, and that testdata/sdoc-changed differs from it in REQ-007
// alone.
func TestSDocFixtures(t *testing.T) {
	b, err := os.ReadFile("../../testdata/bundle/index.json")
	if err != nil {
		t.Fatal(err)
	}
	var idx sdocIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	docs := readSDocTree(t, "../../testdata/sdoc")

	uids := map[string][]string{}
	where := map[string]string{}
	nodes := map[string]SDocNode{}
	for name, doc := range docs {
		if doc.Title == "" {
			t.Errorf("%s: no document title", name)
		}
		for _, n := range doc.Nodes {
			uids[name] = append(uids[name], n.UID)
			if other, ok := where[n.UID]; ok {
				t.Errorf("%s: %s is in %s too", name, n.UID, other)
			}
			where[n.UID], nodes[n.UID] = name, n
			if n.ReviewedHash != "" {
				if h := sdocContentHash(n); h != n.ReviewedHash {
					t.Errorf("%s: %s: REVIEWED_HASH %s, but its UID, TITLE and STATEMENT hash to %s", name, n.UID, n.ReviewedHash, h)
				}
			}
		}
	}
	wantUIDs := map[string][]string{
		"reqs/pump.sdoc":    {"SECT-PUMP-HAZARDS", "HAZ-001", "HAZ-002", "REQ-001", "REQ-004", "REQ-005", "REQ-008"},
		"reqs/alarms.sdoc":  {"REQ-002", "REQ-006", "REQ-007", "REQ-012"},
		"reqs/records.sdoc": {"REQ-003", "REQ-010", "REQ-009"},
		"reqs/ui.sdoc":      {"REQ-011", "REQ-101", "REQ-102"},
	}
	if diff := cmp.Diff(wantUIDs, uids); diff != "" {
		t.Errorf("UIDs per document (-want +got):\n%s", diff)
	}

	regulated, drafts := 0, 0
	for _, r := range idx.Requirements {
		n, ok := nodes[r.UID]
		if !ok {
			t.Errorf("index.json: %s is in no .sdoc fixture", r.UID)
			continue
		}
		if where[r.UID] != r.Document {
			t.Errorf("%s is in %s, index.json says %s", r.UID, where[r.UID], r.Document)
		}
		if n.Type != "REQUIREMENT" || n.Title != r.Title {
			t.Errorf("%s: [%s] titled %q, index.json says a requirement titled %q", r.UID, n.Type, n.Title, r.Title)
		}
		if r.Regulated {
			regulated++
			if r.ReviewedHash == nil || n.ReviewedHash != *r.ReviewedHash {
				t.Errorf("%s: REVIEWED_HASH %q, index.json says %v", r.UID, n.ReviewedHash, r.ReviewedHash)
			}
		} else {
			drafts++
			if n.ReviewedHash != "" || r.ReviewedHash != nil || r.State != "draft" {
				t.Errorf("%s: a draft should have no REVIEWED_HASH, here %q, index.json %v", r.UID, n.ReviewedHash, r.ReviewedHash)
			}
		}
		if want := map[bool]string{true: "Yes", false: "No"}[r.Regulated]; n.Fields["REGULATED"] != want {
			t.Errorf("%s: REGULATED: %s, index.json says regulated %v", r.UID, n.Fields["REGULATED"], r.Regulated)
		}
	}
	if regulated != 12 || drafts != 2 {
		t.Errorf("index.json has %d regulated requirements and %d drafts, want 12 and 2", regulated, drafts)
	}

	changed := readSDocTree(t, "../../testdata/sdoc-changed")
	if len(changed) != len(docs) {
		t.Errorf("sdoc-changed has %d documents, sdoc has %d", len(changed), len(docs))
	}
	for name, doc := range docs {
		cd := changed[name]
		if len(cd.Nodes) != len(doc.Nodes) {
			t.Errorf("sdoc-changed/%s has %d nodes, sdoc/%s %d", name, len(cd.Nodes), name, len(doc.Nodes))
			continue
		}
		for i, n := range doc.Nodes {
			c := cd.Nodes[i]
			if c.UID != n.UID {
				t.Errorf("sdoc-changed/%s: node %d is %s, want %s", name, i, c.UID, n.UID)
				continue
			}
			differs := c.ReviewedHash != n.ReviewedHash || c.Fields["STATEMENT"] != n.Fields["STATEMENT"]
			if differs != (n.UID == "REQ-007") {
				t.Errorf("sdoc-changed/%s: %s differs: %v, want only REQ-007 to", name, n.UID, differs)
			}
			if c.ReviewedHash != "" && sdocContentHash(c) != c.ReviewedHash {
				t.Errorf("sdoc-changed/%s: %s: REVIEWED_HASH does not match its content", name, c.UID)
			}
		}
	}
}

func FuzzParseSDoc(f *testing.F) {
	for _, dir := range []string{"../../testdata/sdoc", "../../testdata/sdoc-changed"} {
		paths, err := filepath.Glob(filepath.Join(dir, "reqs", "*.sdoc"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := ParseSDoc("f.sdoc", b)
		if err != nil {
			if !errors.Is(err, ErrInvalidSDoc) {
				t.Fatalf("error %v does not wrap ErrInvalidSDoc", err)
			}
			if !strings.HasPrefix(err.Error(), "f.sdoc:") {
				t.Fatalf("error %q does not start with the file name", err)
			}
		}
		lines := bytes.Count(b, []byte("\n")) + 1
		seen := map[string]bool{}
		last := 0
		for _, n := range doc.Nodes {
			if n.UID == "" || n.UID != n.Fields["UID"] {
				t.Fatalf("node at line %d: UID %q, field %q", n.Line, n.UID, n.Fields["UID"])
			}
			if seen[n.UID] {
				t.Fatalf("UID %q returned twice", n.UID)
			}
			seen[n.UID] = true
			if h := n.ReviewedHash; h != "" {
				if len(h) < 32 || len(h) > 128 || strings.ToLower(h) != h || !strings.EqualFold(h, n.Fields["REVIEWED_HASH"]) {
					t.Fatalf("%s: ReviewedHash %q from field %q", n.UID, h, n.Fields["REVIEWED_HASH"])
				}
				if _, err := hex.DecodeString(h); err != nil {
					t.Fatalf("%s: ReviewedHash %q is not hex", n.UID, h)
				}
			} else if _, ok := n.Fields["REVIEWED_HASH"]; ok {
				t.Fatalf("%s: REVIEWED_HASH field but no ReviewedHash", n.UID)
			}
			if n.Type == "" || n.Line <= last || n.Line > lines {
				t.Fatalf("%s: type %q at line %d after line %d of %d", n.UID, n.Type, n.Line, last, lines)
			}
			last = n.Line
		}
		// Line endings do not matter: the CRLF form parses the same.
		if bytes.IndexByte(b, '\r') < 0 && len(b) < MaxSDocSize/2 {
			doc2, err2 := ParseSDoc("f.sdoc", bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
			if fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("error %v, with CRLF %v", err, err2)
			}
			if diff := cmp.Diff(doc, doc2); diff != "" {
				t.Fatalf("CRLF parses differently (-LF +CRLF):\n%s", diff)
			}
		}
	})
}

// sdocBenchCorpus returns docs .sdoc documents holding reqs requirements
// in all, each with a multi-line statement, a comment and a REVIEWED_HASH,
// in sections of ten.
func sdocBenchCorpus(docs, reqs int) [][]byte {
	out := make([][]byte, docs)
	uid := 0
	for d := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "[DOCUMENT]\nTITLE: Generated document %d\nUID: DOC-%d\n\n", d, d)
		b.WriteString("[TEXT]\nSTATEMENT: >>>\nA generated document for the benchmark.\n<<<\n\n")
		per := reqs / docs
		if d < reqs%docs {
			per++
		}
		for i := range per {
			if i%10 == 0 {
				fmt.Fprintf(&b, "[[SECTION]]\nTITLE: Section %d\n\n", i/10)
			}
			uid++
			h := sha256.Sum256([]byte(fmt.Sprint(uid)))
			fmt.Fprintf(&b, "[REQUIREMENT]\nUID: REQ-%05d\nSTATUS: Reviewed\nTITLE: Requirement %d\nSTATEMENT: >>>\n"+
				"The pump shall do thing %d within the limits set\nby the active drug library entry.\n<<<\n"+
				"COMMENT: Generated.\nREVIEWED_HASH: %x\nRELATIONS:\n- TYPE: Parent\n  VALUE: HAZ-%d\n\n", uid, uid, uid, h, uid%7)
			if i%10 == 9 || i == per-1 {
				b.WriteString("[[/SECTION]]\n\n")
			}
		}
		out[d] = b.Bytes()
	}
	return out
}

// BenchmarkParseSDoc parses 10,000 requirements in 200 documents per
// iteration.
func BenchmarkParseSDoc(b *testing.B) {
	const docs, reqs = 200, 10000
	corpus := sdocBenchCorpus(docs, reqs)
	size := 0
	for _, d := range corpus {
		size += len(d)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for i, d := range corpus {
			doc, err := ParseSDoc(fmt.Sprintf("doc%d.sdoc", i), d)
			if err != nil {
				b.Fatal(err)
			}
			n += len(doc.Nodes)
		}
		if n != reqs {
			b.Fatalf("parsed %d nodes, want %d", n, reqs)
		}
	}
	b.ReportMetric(float64(reqs)*float64(b.N)/b.Elapsed().Seconds(), "reqs/s")
}

// TestSDocBenchCorpus keeps the benchmark's input valid.
func TestSDocBenchCorpus(t *testing.T) {
	n := 0
	for i, d := range sdocBenchCorpus(7, 95) {
		doc, err := ParseSDoc(fmt.Sprintf("doc%d.sdoc", i), d)
		if err != nil {
			t.Fatal(err)
		}
		n += len(doc.Nodes)
		if !slices.ContainsFunc(doc.Nodes, func(n SDocNode) bool { return n.ReviewedHash != "" }) {
			t.Errorf("doc%d has no REVIEWED_HASH", i)
		}
	}
	if n != 95 {
		t.Errorf("parsed %d requirements, want 95", n)
	}
}
