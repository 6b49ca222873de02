package release

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// readFixtures parses the .sdoc files under dir, paths relative to it.
func readFixtures(t testing.TB, dir string) []SDocFile {
	t.Helper()
	out, err := ReadSDocDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sampleIndex(t testing.TB) evidence.Index {
	t.Helper()
	b, err := os.ReadFile("../../testdata/bundle/index.json")
	if err != nil {
		t.Fatal(err)
	}
	x, err := evidence.ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

var approval = Approval{PR: "https://git.example.com/dhf/pull/57", Commit: "0a1b2c3d4e5f", Approver: "Jane Doe <jane@example.com>", ApprovedAt: time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)}

func TestStampsAndGate(t *testing.T) {
	f := newFixture(t)
	docs := readFixtures(t, "../../testdata/sdoc")
	idx := sampleIndex(t)

	// Before any stamp, every regulated requirement blocks.
	g, err := f.reg.Gate(t.Context(), idx, docs)
	if err != nil {
		t.Fatal(err)
	}
	if g.Passed() || g.Blocking() != 12 || g.Stamps != 0 || !strings.Contains(g.Offenders[0].Problem, "no stamp in the log") {
		t.Fatalf("gate before stamps: %+v", g)
	}

	res, err := f.reg.ScanStamps(t.Context(), docs, approval, "ci:dhf")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Appended) != 12 || res.Existing != 0 || res.Stamped != 12 {
		t.Fatalf("first scan: %+v", res)
	}
	size := f.l.Log.Size()
	again, err := f.reg.ScanStamps(t.Context(), docs, Approval{PR: "58", Commit: "ffff", Approver: "Someone Else"}, "ci:dhf")
	if err != nil || len(again.Appended) != 0 || again.Existing != 12 || f.l.Log.Size() != size {
		t.Fatalf("second scan appended: %+v, %v (log %d → %d)", again, err, size, f.l.Log.Size())
	}
	for _, d := range docs {
		if ok, _ := f.l.Blobs.Has(t.Context(), cas.Sum(d.Content)); !ok {
			t.Errorf("document %s was not stored", d.Path)
		}
	}

	g, err = f.reg.Gate(t.Context(), idx, docs)
	if err != nil || !g.Passed() || g.Stamps != 12 || g.Requirements != 12 || g.Reviewed != 12 {
		t.Fatalf("gate after stamps: %+v, %v", g, err)
	}
	passList := g.StampList
	if g.StampList != cas.Sum(StampListText(g.Matched)) || len(strings.Split(strings.TrimSpace(string(StampListText(g.Matched))), "\n")) != 12 {
		t.Errorf("stamp list %s does not cover the 12 stamps", g.StampList)
	}
	// Without .sdoc files the index's hashes are the current ones.
	if g2, err := f.reg.Gate(t.Context(), idx, nil); err != nil || !g2.Passed() || g2.StampList != g.StampList {
		t.Errorf("gate from index.json alone: %+v, %v", g2, err)
	}

	// A requirement changed after its approval blocks, naming the UID.
	changed := readFixtures(t, "../../testdata/sdoc-changed")
	g, err = f.reg.Gate(t.Context(), idx, changed)
	if err != nil || g.Passed() || g.Blocking() != 1 || g.Offenders[0].UID != "REQ-007" {
		t.Fatalf("gate on changed content: %+v, %v", g, err)
	}

	// index.json states: draft, suspect, a UID the documents do not have.
	bad := sampleIndex(t)
	bad.Requirements[0].State = "draft"
	bad.Requirements[1].Suspect = true
	bad.Requirements = append(bad.Requirements, evidence.Requirement{UID: "REQ-999", State: "reviewed", Regulated: true})
	g, err = f.reg.Gate(t.Context(), bad, docs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range g.Offenders {
		got = append(got, o.UID+" "+o.Problem)
	}
	want := []string{`REQ-001 is "draft", not reviewed`, "REQ-002 is suspect", "REQ-999 is in index.json but in none of the .sdoc files"}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("offenders %q lack %q", got, w)
		}
	}

	// The signed manifest commits to the gate's result.
	f.enroll(f.jane)
	p, err := Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "v0.1.0", Meaning: "approved-for-release",
		Signer: signing.Signer{Name: f.jane.Name, Email: f.jane.Email, KeyID: f.jane.Public().KeyID()},
		Gate:   func(x evidence.Index) (GateResult, error) { return f.reg.Gate(t.Context(), x, docs) }})
	if err != nil {
		t.Fatal(err)
	}
	if ev := p.Predicate.Evidence; ev == nil || ev.Stamps != 12 || ev.StampList == nil || *ev.StampList != passList {
		t.Errorf("evidence block %+v", p.Predicate.Evidence)
	}
	_, err = Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "v0.1.0", Meaning: "approved-for-release",
		Signer: signing.Signer{Name: f.jane.Name, Email: f.jane.Email, KeyID: f.jane.Public().KeyID()},
		Gate:   func(x evidence.Index) (GateResult, error) { return f.reg.Gate(t.Context(), x, changed) }})
	if !errors.Is(err, ErrGateFailed) {
		t.Errorf("Prepare with a failing gate = %v, want ErrGateFailed", err)
	}

	// Trace: the stamp, then the release once recorded.
	m, _ := p.Sign(t.Context(), f.jane)
	if _, err := f.reg.Record(t.Context(), f.bundle, m, "ci", RecordOptions{}); err != nil {
		t.Fatal(err)
	}
	row, err := f.reg.Trace(t.Context(), "REQ-007")
	if err != nil || len(row.Stamps) != 1 || row.Stamps[0].Stamp.PR != approval.PR || len(row.Releases) != 1 || row.Releases[0].Release.Version != "v0.1.0" {
		t.Errorf("Trace(REQ-007) = %+v, %v", row, err)
	}
	rel, rows, err := f.reg.TraceRelease(t.Context(), "v0.1.0")
	if err != nil || len(rows) != 12 || rel.Release.Version != "v0.1.0" {
		t.Fatalf("TraceRelease = %v rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if len(r.Stamps) != 1 || r.Stamps[0].Stamp.Approver != approval.Approver {
			t.Errorf("%s: stamps %+v", r.UID, r.Stamps)
		}
	}
	if _, err := f.reg.Trace(t.Context(), "REQ-404"); err == nil {
		t.Error("Trace of an unknown UID succeeded")
	}

	// A release whose index.json states no REVIEWED_HASH, with a later
	// approval of REQ-007 (sdoc-changed) logged before it: the trace
	// shows the stamp the signed stamp list names, not every stamp of
	// the UID logged before the release.
	if _, err := f.reg.ScanStamps(t.Context(), changed, Approval{PR: "58", Commit: "def", Approver: "Bob Lee <bob@example.com>"}, "ci"); err != nil {
		t.Fatal(err)
	}
	b2 := copyBundle(t)
	ib, _ := os.ReadFile(b2 + "/index.json")
	ib = regexp.MustCompile(`,?\s*"reviewed_hash":\s*"[0-9a-fA-F]+"`).ReplaceAll(ib, nil)
	os.WriteFile(b2+"/index.json", ib, 0o644)
	sums, _ := os.ReadFile(b2 + "/SHA256SUMS")
	sums = regexp.MustCompile(`(?m)^[0-9a-f]{64}  index\.json$`).ReplaceAll(sums, []byte(strings.TrimPrefix(cas.Sum(ib).String(), "sha256:")+"  index.json"))
	os.WriteFile(b2+"/SHA256SUMS", sums, 0o644)
	p2, err := Prepare(t.Context(), SignRequest{Bundle: b2, Version: "v0.2.0", Meaning: "approved-for-release",
		Signer: signing.Signer{Name: f.jane.Name, Email: f.jane.Email, KeyID: f.jane.Public().KeyID()},
		Gate:   func(x evidence.Index) (GateResult, error) { return f.reg.Gate(t.Context(), x, docs) }})
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := p2.Sign(t.Context(), f.jane)
	if _, err := f.reg.Record(t.Context(), b2, m2, "ci", RecordOptions{StampList: StampListText(p2.Gate.Matched)}); err != nil {
		t.Fatal(err)
	}
	_, rows, err = f.reg.TraceRelease(t.Context(), "v0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.UID == "REQ-007" && (len(r.Stamps) != 1 || r.Stamps[0].Stamp.PR != approval.PR || !strings.HasPrefix(r.ReviewedHash, "a60b711f")) {
			t.Errorf("TraceRelease(v0.2.0) REQ-007: hash %s, stamps %+v; want only the signed stamp (PR %s)", r.ReviewedHash, r.Stamps, approval.PR)
		}
	}
}

func TestScanRefusals(t *testing.T) {
	f := newFixture(t)
	docs := readFixtures(t, "../../testdata/sdoc")
	// The same UID in two documents: nothing is appended.
	twice := append(docs, SDocFile{Path: "copy/alarms.sdoc", Content: docs[0].Content, Doc: docs[0].Doc})
	if _, err := f.reg.ScanStamps(t.Context(), twice, approval, "ci"); !errors.Is(err, ErrDuplicateUID) {
		t.Errorf("duplicate UIDs: %v", err)
	}
	if f.l.Log.Size() != 0 {
		t.Errorf("the log grew to %d", f.l.Log.Size())
	}
	// An approver with a right-to-left override, which would show as
	// another name, is refused too.
	if _, err := f.reg.ScanStamps(t.Context(), docs, Approval{PR: "1", Commit: "c", Approver: "Eve \u202e>moc.elpmaxe@enaj< eoD enaJ"}, "ci"); !errors.Is(err, ledger.ErrInvalidEntry) || f.l.Log.Size() != 0 {
		t.Errorf("approver with U+202E: %v, log %d", err, f.l.Log.Size())
	}
	// A stamp with a bad approver is refused before anything is appended.
	if _, err := f.reg.ScanStamps(t.Context(), docs, Approval{PR: "1", Commit: "c", Approver: "bad\nname"}, "ci"); err == nil || f.l.Log.Size() != 0 {
		t.Errorf("bad approver: %v, log %d", err, f.l.Log.Size())
	}
}

// A stamp sent without its document (as over the API) names a stored
// .sdoc by digest, which must define the UID with the stamp's
// REVIEWED_HASH; approved_at may not be in the future.
func TestStampChecksItsDocument(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	hash := strings.Repeat("ab", 32)
	doc := []byte("[DOCUMENT]\nTITLE: Alarms\n\n[REQUIREMENT]\nUID: REQ-1\nTITLE: Alarm\nSTATEMENT: It rings.\nREVIEWED_HASH: " + hash + "\n")
	put := func(b []byte) cas.Digest {
		info, err := f.l.Blobs.Put(ctx, strings.NewReader(string(b)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return info.Digest
	}
	sdoc, notSDoc := put(doc), put([]byte("MZ installer"))
	stamp := func(uid, h string, d cas.Digest, at string) ledger.Stamp {
		return ledger.Stamp{UID: uid, ReviewedHash: h, Document: "reqs/alarms.sdoc", DocumentDigest: d,
			PR: "57", Commit: "abc", Approver: "Jane Doe <jane@example.com>", ApprovedAt: at}
	}
	now := time.Now().UTC().Format(time.RFC3339)
	for _, c := range []struct {
		name string
		s    ledger.Stamp
		want string
	}{
		{"a document that is no .sdoc", stamp("REQ-1", hash, notSDoc, now), "not a valid .sdoc"},
		{"another REVIEWED_HASH", stamp("REQ-1", strings.Repeat("cd", 32), sdoc, now), "has REVIEWED_HASH"},
		{"a UID the document lacks", stamp("REQ-2", hash, sdoc, now), "defines no REQ-2"},
		{"a document not stored", stamp("REQ-1", hash, cas.Sum([]byte("absent")), now), "upload the .sdoc first"},
		{"approved in the future", stamp("REQ-1", hash, sdoc, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)), "in the future"},
		{"an approver that reads as another", func() ledger.Stamp {
			s := stamp("REQ-1", hash, sdoc, now)
			s.Approver = "Eve \u202e>moc.elpmaxe@enaj< eoD enaJ"
			return s
		}(), "bidirectional control character (U+202E)"},
	} {
		if _, err := f.reg.Stamp(ctx, c.s, nil, "ci"); !errors.Is(err, ledger.ErrInvalidEntry) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Stamp = %v, want ErrInvalidEntry saying %q", c.name, err, c.want)
		}
	}
	if f.l.Log.Size() != 0 {
		t.Fatalf("refused stamps appended %d entries", f.l.Log.Size())
	}
	if _, err := f.reg.Stamp(ctx, stamp("REQ-1", hash, sdoc, now), nil, "ci"); err != nil {
		t.Errorf("a stamp its stored document bears out: %v", err)
	}
}

// A requirement edited after its review, its REVIEWED_HASH left as it
// was, blocks the gate: the hash no longer matches the content.
func TestGateChecksContentHash(t *testing.T) {
	f := newFixture(t)
	docs := readFixtures(t, "../../testdata/sdoc")
	if _, err := f.reg.ScanStamps(t.Context(), docs, approval, "ci"); err != nil {
		t.Fatal(err)
	}
	idx, err := evidence.ParseIndex(mustRead(t, "../../testdata/bundle/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := f.reg.Gate(t.Context(), idx, docs); err != nil || !g.Passed() {
		t.Fatalf("Gate on the fixtures = %+v, %v", g.Offenders, err)
	}
	edited := append([]SDocFile(nil), docs...)
	for i, d := range edited {
		if !strings.HasSuffix(d.Path, "alarms.sdoc") {
			continue
		}
		b := []byte(strings.Replace(string(d.Content), "5 min", "60 min", 1))
		if string(b) == string(d.Content) {
			t.Fatal("the fixture has no \"5 min\" to edit")
		}
		doc, err := evidence.ParseSDoc(d.Path, b)
		if err != nil {
			t.Fatal(err)
		}
		edited[i] = SDocFile{Path: d.Path, Content: b, Doc: doc}
	}
	g, err := f.reg.Gate(t.Context(), idx, edited)
	if err != nil {
		t.Fatal(err)
	}
	if g.Passed() || len(g.Offenders) != 1 || !strings.Contains(g.Offenders[0].Problem, "edited after its review") {
		t.Errorf("Gate after an edit that kept the REVIEWED_HASH: %+v", g.Offenders)
	}

	// What the .sdoc files say of review and regulation must agree with
	// index.json: a regulated requirement back in Draft, and a new one
	// marked REGULATED: Yes that index.json does not list.
	for i, d := range docs {
		if !strings.HasSuffix(d.Path, "alarms.sdoc") {
			continue
		}
		b := strings.Replace(string(d.Content), "STATUS: Reviewed", "STATUS: Draft", 1)
		b += "\n[REQUIREMENT]\nUID: REQ-013\nSTATUS: Draft\nREGULATED: Yes\nTITLE: Split off\nSTATEMENT: New.\n"
		doc, err := evidence.ParseSDoc(d.Path, []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		edited[i] = SDocFile{Path: d.Path, Content: []byte(b), Doc: doc}
	}
	if g, err = f.reg.Gate(t.Context(), idx, edited); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range g.Offenders {
		got = append(got, o.UID+" "+o.Problem)
	}
	for _, want := range []string{"has STATUS: Draft", "REQ-013 is REGULATED: Yes"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("Gate offenders %q lack %q", got, want)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanRefusesFutureApproval(t *testing.T) {
	f := newFixture(t)
	docs := readFixtures(t, "../../testdata/sdoc")
	a := approval
	a.ApprovedAt = time.Now().Add(24 * time.Hour)
	if _, err := f.reg.ScanStamps(t.Context(), docs, a, "ci"); !errors.Is(err, ledger.ErrInvalidEntry) || !strings.Contains(err.Error(), "in the future") || f.l.Log.Size() != 0 {
		t.Errorf("scan approved tomorrow: %v, log size %d", err, f.l.Log.Size())
	}
}

// moveRequirement returns docs with requirement uid cut out of the
// document at path from and put, unchanged, into a new document to.
func moveRequirement(t *testing.T, docs []SDocFile, uid, from, to string) []SDocFile {
	t.Helper()
	var out []SDocFile
	var block string
	for _, d := range docs {
		if d.Path != from {
			out = append(out, d)
			continue
		}
		text := string(d.Content)
		i := strings.Index(text, "[REQUIREMENT]\nUID: "+uid+"\n")
		if i < 0 {
			t.Fatalf("%s defines no %s", from, uid)
		}
		n := strings.Index(text[i+1:], "\n[")
		if n < 0 {
			t.Fatalf("%s ends with %s", from, uid)
		}
		block = text[i : i+1+n+1]
		out = append(out, parseFixture(t, d.Path, text[:i]+text[i+1+n+1:]))
	}
	return append(out, parseFixture(t, to, "[DOCUMENT]\nTITLE: Moved\n\n"+block))
}

func parseFixture(t *testing.T, path, text string) SDocFile {
	t.Helper()
	doc, err := evidence.ParseSDoc(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return SDocFile{Path: path, Content: []byte(text), Doc: doc}
}

// A requirement moved to another document, its content unchanged, is
// stamped again where it is now; trace and the release's table show that
// document, with the provenance of the same stamp.
func TestMovedRequirement(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	docs := readFixtures(t, "../../testdata/sdoc")
	if _, err := f.reg.ScanStamps(ctx, docs, approval, "ci"); err != nil {
		t.Fatal(err)
	}
	moved := moveRequirement(t, docs, "REQ-007", "reqs/alarms.sdoc", "reqs/power.sdoc")
	move := Approval{PR: "59", Commit: "5ca1ab1e", Approver: "Bob Lee <bob@example.com>", ApprovedAt: approval.ApprovedAt.Add(time.Hour)}
	res, err := f.reg.ScanStamps(ctx, moved, move, "ci")
	if err != nil || len(res.Appended) != 1 || res.Existing != 11 {
		t.Fatalf("scan after the move: %d appended, %d existing, %v; want 1 and 11", len(res.Appended), res.Existing, err)
	}
	if res, err := f.reg.ScanStamps(ctx, moved, Approval{PR: "60", Commit: "f00d", Approver: "Someone Else"}, "ci"); err != nil || len(res.Appended) != 0 {
		t.Errorf("scan of the moved documents again: %d appended, %v; want none", len(res.Appended), err)
	}

	row, err := f.reg.Trace(ctx, "REQ-007")
	if err != nil {
		t.Fatal(err)
	}
	if len(row.Stamps) != 2 || row.Document != "reqs/power.sdoc" {
		t.Fatalf("Trace(REQ-007): document %q, %d stamps; want reqs/power.sdoc, 2", row.Document, len(row.Stamps))
	}
	if s := row.Stamps[1].Stamp; s.Document != row.Document || s.PR != move.PR || s.Approver != move.Approver {
		t.Errorf("Trace(REQ-007) latest stamp %+v, want the move's (PR %s) in %s", s, move.PR, row.Document)
	}
	if row, err := f.reg.Trace(ctx, "REQ-012"); err != nil || row.Document != "reqs/alarms.sdoc" || len(row.Stamps) != 1 {
		t.Errorf("Trace(REQ-012), which stayed = %q, %d stamps, %v", row.Document, len(row.Stamps), err)
	}

	// A stamp sent alone for the old place, as over the API, is a new
	// stamp too: the requirement is back where it was.
	old := row.Stamps[0].Stamp
	old.PR, old.Commit, old.ApprovedAt = "61", "0ddba11", move.ApprovedAt.Add(time.Hour).Format(time.RFC3339)
	if rc, err := f.reg.Stamp(ctx, old, nil, "ci"); err != nil || rc.Duplicate {
		t.Fatalf("stamp back in reqs/alarms.sdoc: duplicate %v, %v", rc.Duplicate, err)
	}
	if rc, err := f.reg.Stamp(ctx, old, nil, "ci"); err != nil || !rc.Duplicate {
		t.Errorf("the same stamp again: duplicate %v, %v; want the first's receipt", rc.Duplicate, err)
	}
	back := row.Stamps[1].Stamp
	back.PR = "62"
	if rc, err := f.reg.Stamp(ctx, back, nil, "ci"); err != nil || rc.Duplicate {
		t.Fatalf("stamp in reqs/power.sdoc again: duplicate %v, %v", rc.Duplicate, err)
	}

	// The release signed on the moved documents stands on the stamp in
	// reqs/power.sdoc, and its table says so.
	f.enroll(f.jane)
	p, err := Prepare(ctx, SignRequest{Bundle: f.bundle, Version: "v0.1.0", Meaning: "approved-for-release",
		Signer: signing.Signer{Name: f.jane.Name, Email: f.jane.Email, KeyID: f.jane.Public().KeyID()},
		Gate:   func(x evidence.Index) (GateResult, error) { return f.reg.Gate(ctx, x, moved) }})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Sign(ctx, f.jane)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Record(ctx, f.bundle, m, "ci", RecordOptions{StampList: StampListText(p.Gate.Matched)}); err != nil {
		t.Fatal(err)
	}
	_, rows, err := f.reg.TraceRelease(ctx, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.UID != "REQ-007" {
			continue
		}
		if len(r.Stamps) != 1 || r.Document != "reqs/power.sdoc" || r.Stamps[0].Stamp.Document != r.Document || r.Stamps[0].Stamp.PR != "62" || r.ReviewedHash != r.Stamps[0].Stamp.ReviewedHash {
			t.Errorf("TraceRelease REQ-007: document %q, hash %s, stamps %+v; want the one stamp of PR 62 in reqs/power.sdoc", r.Document, r.ReviewedHash, r.Stamps)
		}
	}
}
