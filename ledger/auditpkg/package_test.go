package auditpkg

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/release/releasetest"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

type fixture struct {
	l      *ledger.Ledger
	src    Source
	sample releasetest.Sample
	key    note.Verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	l, src := openLedger(t)
	reg := src.Registry
	s := releasetest.Record(t, reg, releasetest.Options{})
	// The log grows after the release, so the consistency proof has work.
	for _, name := range []string{"a.txt", "b.txt", "c.txt"} {
		if _, err := l.Blobs.Put(t.Context(), strings.NewReader(name), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Name: name, Digest: cas.Sum([]byte(name)), Size: int64(len(name)), MediaType: "text/plain"}}, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	v, err := proofs.NewVerifier(l.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{l: l, src: src, sample: s, key: v}
}

// openLedger makes a new ledger, closed when the test ends, and the
// source of its packages.
func openLedger(t *testing.T) (*ledger.Ledger, Source) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(t.Context(), dir, "test.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, Source{Log: l.Log, Registry: release.New(l.Log, l.Blobs), Blobs: l.Blobs, PublicKey: l.PublicKey}
}

func (f *fixture) zip(t *testing.T) []byte {
	t.Helper()
	p, err := Gather(t.Context(), f.src, f.sample.Version)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteZip(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func read(t *testing.T, b []byte) *Package {
	t.Helper()
	p, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func statuses(rep release.Report) map[string]string {
	out := map[string]string{}
	for _, c := range rep.Checks {
		out[c.Name] = c.Status
	}
	return out
}

func TestPackageVerifies(t *testing.T) {
	f := newFixture(t)
	b := f.zip(t)
	p := read(t, b)
	if p.FileName() != "release-v0.1.0-audit.zip" || p.Meta.ReleaseIndex != f.sample.Receipt.Index || p.Meta.TreeSize != f.l.Log.Size() {
		t.Errorf("package label %+v, file %s", p.Meta, p.FileName())
	}
	rep := p.Verify(t.Context(), VerifyOptions{Bundle: f.sample.Bundle, LogKey: f.key})
	if !rep.Verified {
		t.Fatalf("the package of a recorded release does not verify: %+v", rep.Checks)
	}
	st := statuses(rep)
	for _, name := range []string{"manifest", "signature", "listing", "bundle digest", "SHA256SUMS", "receipt", "ledger record",
		"package checkpoint", "consistency", "signer enrolment", "package log key", "package label", "stamps"} {
		if st[name] != release.Passed {
			t.Errorf("check %q is %q, want ok; checks %+v", name, st[name], rep.Checks)
		}
	}
	if !strings.Contains(rep.Conclusion, "Jane Doe <jane@example.com>") || !strings.Contains(rep.Conclusion, "approved-for-release") {
		t.Errorf("conclusion %q", rep.Conclusion)
	}
	// 12 regulated requirements in the sample, each with its stamp.
	stamps, err := p.StampEntries()
	if err != nil || len(stamps) != 12 {
		t.Fatalf("StampEntries: %d, %v", len(stamps), err)
	}
	for _, s := range stamps {
		if s.Stamp.PR == "" || s.Stamp.Approver == "" || s.Index >= p.Meta.ReleaseIndex {
			t.Errorf("stamp %+v", s)
		}
	}
	// The receipt is the one issued when the release was recorded, and
	// the consistency proof leads from it to the package's checkpoint.
	rc, _ := proofs.ParseReceipt(p.Receipt)
	if rc.Checkpoint != f.sample.Receipt.Checkpoint {
		t.Errorf("the package's receipt is at %q, the release was recorded at %q", rc.Checkpoint, f.sample.Receipt.Checkpoint)
	}
	// The README names the version and the commands.
	zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	var names []string
	for _, zf := range zr.File {
		names = append(names, zf.Name)
		if strings.HasSuffix(zf.Name, "README.txt") {
			r, _ := zf.Open()
			var rd bytes.Buffer
			rd.ReadFrom(r)
			for _, want := range []string{"v0.1.0", "ledger verify --audit-package release-v0.1.0-audit.zip", "LC_ALL=C sort", "cosign verify-blob-attestation"} {
				if !strings.Contains(rd.String(), want) {
					t.Errorf("README lacks %q", want)
				}
			}
		}
	}
	if len(names) != 12 || !strings.HasPrefix(names[0], "release-v0.1.0-audit/") {
		t.Errorf("zip files %v", names)
	}

	// The signer key, when given, must be the enrolled one.
	other, _ := signing.GenerateKey(signing.ECDSAP256)
	pub := other.Public()
	rep = p.Verify(t.Context(), VerifyOptions{Bundle: f.sample.Bundle, LogKey: f.key, SignerKey: &pub})
	if c, failed := rep.FirstFailure(); !failed || c.Name != "signature" {
		t.Errorf("another signer key: first failure %+v", c)
	}
	good := f.sample.Key.Public()
	if rep = p.Verify(t.Context(), VerifyOptions{Bundle: f.sample.Bundle, LogKey: f.key, SignerKey: &good}); !rep.Verified {
		t.Errorf("with the signer's key given: %+v", rep.Checks)
	}
	// No log key: nothing can be trusted.
	if rep = p.Verify(t.Context(), VerifyOptions{Bundle: f.sample.Bundle}); rep.Verified || !strings.Contains(rep.Conclusion, "--log-key") {
		t.Errorf("without a log key: %s", rep.Conclusion)
	}
}

// TestPackageTampering changes one piece at a time and checks the right
// check fails, naming what is wrong.
func TestPackageTampering(t *testing.T) {
	f := newFixture(t)
	b := f.zip(t)
	otherKey := func() note.Verifier {
		skey, vkey, _ := note.GenerateKey(nil, "test.example/dhf")
		_ = skey
		v, _ := note.NewVerifier(vkey)
		return v
	}()
	cases := []struct {
		name   string
		change func(p *Package, o *VerifyOptions)
		check  string
		detail string
	}{
		{"a changed bundle file", func(p *Package, o *VerifyOptions) {
			dir := t.TempDir()
			releasetest.CopyDir(t, f.sample.Bundle, dir)
			os.WriteFile(filepath.Join(dir, "index.json"), []byte("{}"), 0o644)
			o.Bundle = dir
		}, "bundle digest", "index.json"},
		{"another log key", func(p *Package, o *VerifyOptions) { o.LogKey = otherKey }, "receipt", ""},
		{"the package's log.pub replaced", func(p *Package, o *VerifyOptions) {
			_, vkey, _ := note.GenerateKey(nil, "test.example/dhf")
			p.LogKey = []byte(vkey + "\n")
		}, "package log key", "not the key you gave"},
		{"a stamp left out", func(p *Package, o *VerifyOptions) {
			lines := strings.SplitAfter(string(p.StampList), "\n")
			p.StampList = []byte(strings.Join(lines[1:], ""))
		}, "stamps", "the manifest signs the stamp list"},
		{"a stamp receipt altered", func(p *Package, o *VerifyOptions) {
			p.Stamps = bytes.Replace(p.Stamps, []byte(`"hashes":["`), []byte(`"hashes":["AAAA`), 1)
		}, "stamps", ""},
		{"the consistency proof altered", func(p *Package, o *VerifyOptions) {
			p.Consistency = bytes.Replace(p.Consistency, []byte(`"hashes": [`+"\n"+`    "`), []byte(`"hashes": [`+"\n"+`    "AAAA`), 1)
		}, "consistency", "FORK"},
		{"the signer entries left out", func(p *Package, o *VerifyOptions) {
			p.SignerEntries = nil
		}, "signer enrolment", "the package is damaged or incomplete"},
		{"a label for another release", func(p *Package, o *VerifyOptions) { p.Meta.ReleaseIndex++ }, "package label", "release index"},
		{"a label with a garbled date", func(p *Package, o *VerifyOptions) { p.Meta.CreatedAt = "yesterday" }, "package label", "created_at"},
		// Receipts the release's checks do not need are checked in full
		// too: each line verifies on its own, as verify-receipt would.
		{"a signer entry's origin altered", func(p *Package, o *VerifyOptions) {
			p.SignerEntries = bytes.Replace(p.SignerEntries, []byte(`"origin":"`), []byte(`"origin":"x`), 1)
		}, "package proofs", "signer-entries.jsonl line 1"},
		{"a signer entry's checkpoint signature altered", func(p *Package, o *VerifyOptions) {
			i := bytes.Index(p.SignerEntries, []byte("\u2014 "))
			if i < 0 {
				i = bytes.Index(p.SignerEntries, []byte("— "))
			}
			if i < 0 {
				t.Fatalf("no signature line in %s", p.SignerEntries)
			}
			j := i + bytes.IndexByte(p.SignerEntries[i:], '\\') - 4 // inside the signature, before its \n
			b := append([]byte(nil), p.SignerEntries...)
			b[j] ^= 'A' ^ 'B'
			if b[j] == p.SignerEntries[j] {
				b[j] = 'C'
			}
			p.SignerEntries = b
		}, "package proofs", "signer-entries.jsonl line 1"},
		{"a stamp's entry digest altered", func(p *Package, o *VerifyOptions) {
			p.Stamps = bytes.Replace(p.Stamps, []byte(`"entry_digest":"sha256:`), []byte(`"entry_digest":"sha256:00`), 1)
		}, "package proofs", "stamps.jsonl line 1"},
		{"the consistency proof replaced", func(p *Package, o *VerifyOptions) { p.Consistency = []byte(`{"from":0,"to":0,"hashes":[]}`) }, "package proofs", "consistency.json proves 0 to 0"},
		{"the consistency proof unreadable", func(p *Package, o *VerifyOptions) { p.Consistency = []byte(`not json`) }, "package proofs", "consistency.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := read(t, b)
			o := VerifyOptions{Bundle: f.sample.Bundle, LogKey: f.key}
			c.change(p, &o)
			rep := p.Verify(t.Context(), o)
			if rep.Verified {
				t.Fatalf("verified after %s", c.name)
			}
			var hit *release.Check
			for i := range rep.Checks {
				if rep.Checks[i].Name == c.check && rep.Checks[i].Status == release.Failed {
					hit = &rep.Checks[i]
				}
			}
			if hit == nil {
				t.Fatalf("check %q did not fail; checks %+v", c.check, rep.Checks)
			}
			if !strings.Contains(hit.Detail, c.detail) {
				t.Errorf("%s failed with %q, want it to mention %q", c.check, hit.Detail, c.detail)
			}
		})
	}
}

// rezip rewrites a package's zip through edit, which gets each file's
// name and content and returns the files to write instead.
func rezip(t *testing.T, b []byte, edit func(name string, data []byte) []namedFile) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, zf := range zr.File {
		r, _ := zf.Open()
		var data bytes.Buffer
		data.ReadFrom(r)
		for _, nf := range edit(zf.Name, data.Bytes()) {
			w, _ := zw.Create(nf.name)
			w.Write(nf.data)
		}
	}
	zw.Close()
	return out.Bytes()
}

func TestReadRefuses(t *testing.T) {
	f := newFixture(t)
	b := f.zip(t)
	keep := func(name string, data []byte) []namedFile { return []namedFile{{name, data}} }
	cases := []struct {
		name string
		zip  []byte
		want string
	}{
		{"not a zip", []byte("PK\x03\x04 nonsense"), "not a valid zip"},
		{"empty", rezip(t, b, func(string, []byte) []namedFile { return nil }), "empty"},
		{"a file missing", rezip(t, b, func(name string, data []byte) []namedFile {
			if strings.HasSuffix(name, "/stamps.jsonl") {
				return nil
			}
			return keep(name, data)
		}), "stamps.jsonl is missing"},
		{"a path escaping the folder", rezip(t, b, func(name string, data []byte) []namedFile {
			if strings.HasSuffix(name, "/log.pub") {
				return []namedFile{{name, data}, {"../../etc/evil", data}}
			}
			return keep(name, data)
		}), "hostile or malformed path"},
		{"an absolute path", rezip(t, b, func(name string, data []byte) []namedFile {
			return append(keep(name, data), namedFile{"/tmp/x", nil})
		}), "hostile or malformed path"},
		{"an extra file", rezip(t, b, func(name string, data []byte) []namedFile {
			if strings.HasSuffix(name, "/log.pub") {
				return append(keep(name, data), namedFile{"release-v0.1.0-audit/extra.sh", []byte("#!/bin/sh")})
			}
			return keep(name, data)
		}), "unexpected file"},
		{"a duplicate file", rezip(t, b, func(name string, data []byte) []namedFile {
			if strings.HasSuffix(name, "/log.pub") {
				return []namedFile{{name, data}, {name, data}}
			}
			return keep(name, data)
		}), "appears twice"},
		{"two folders", rezip(t, b, func(name string, data []byte) []namedFile {
			return keep(strings.Replace(name, "/log.pub", "/../release-v0.2.0-audit/log.pub", 1), data)
		}), "hostile or malformed"},
		{"another format", rezip(t, b, func(name string, data []byte) []namedFile {
			return keep(name, bytes.Replace(data, []byte(Format), []byte("something-else/v9"), 1))
		}), "format"},
		{"an oversized file", rezip(t, b, func(name string, data []byte) []namedFile {
			if strings.HasSuffix(name, "/log.pub") {
				return keep(name, bytes.Repeat([]byte("x"), 70<<10))
			}
			return keep(name, data)
		}), "over its"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.zip), int64(len(c.zip)))
			if !errors.Is(err, ErrInvalidPackage) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Read: %v, want ErrInvalidPackage mentioning %q", err, c.want)
			}
		})
	}
}

func TestGatherUnknownRelease(t *testing.T) {
	f := newFixture(t)
	if _, err := Gather(t.Context(), f.src, "v9.9.9"); !errors.Is(err, release.ErrUnknownRelease) {
		t.Errorf("Gather(v9.9.9): %v, want ErrUnknownRelease", err)
	}
	if _, err := Gather(t.Context(), f.src, "../x"); err == nil {
		t.Error("Gather with a bad version succeeded")
	}
}

func FuzzRead(f *testing.F) {
	entries, _ := filepath.Glob(filepath.Join(releasetest.Testdata(), "auditpkg", "*.zip"))
	for _, e := range entries {
		b, _ := os.ReadFile(e)
		f.Add(b)
	}
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrInvalidPackage) {
				t.Fatalf("Read error %v is not ErrInvalidPackage", err)
			}
			return
		}
		// Whatever reads must write back and read again the same.
		var out bytes.Buffer
		if err := p.WriteZip(&out); err != nil {
			t.Fatal(err)
		}
		q, err := Read(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("a package that read does not read after WriteZip: %v", err)
		}
		if !bytes.Equal(q.Manifest, p.Manifest) || q.Meta != p.Meta || !bytes.Equal(q.Stamps, p.Stamps) {
			t.Fatal("round trip changed the package")
		}
	})
}

func TestReport(t *testing.T) {
	f := newFixture(t)
	p := read(t, f.zip(t))
	rep := p.Verify(t.Context(), VerifyOptions{Bundle: f.sample.Bundle, LogKey: f.key})
	var out bytes.Buffer
	if err := p.WriteReport(&out, rep, f.key, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	for _, want := range []string{"VERIFIED", "Jane Doe &lt;jane@example.com&gt;", "approved-for-release", rep.SignedAt, rep.Bundle.String(),
		"REQ-001", "https://git.example.com/dhf/pull/57", "bioflow_pro.exe", "allure/data/suites.json", "@media print", "signer enrolment", "2026-11-25T12:00:00Z"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Self-contained: nothing fetched, nothing run.
	for _, bad := range []string{"<script", "src=", "<link", "http://", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if strings.Contains(html, "NOT VERIFIED") {
		t.Error("a verified report says NOT VERIFIED")
	}
}

// TestReportEscapes records a release whose signer's name holds markup
// and checks the report shows it as text.
func TestReportEscapes(t *testing.T) {
	l, src := openLedger(t)
	evil := `Eve <script>alert(1)</script>`
	s := releasetest.Record(t, src.Registry, releasetest.Options{Name: evil, Email: `eve"onmouseover="x@example.com`})
	p, err := Gather(t.Context(), src, s.Version)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := proofs.NewVerifier(l.PublicKey)
	rep := p.Verify(t.Context(), VerifyOptions{Bundle: s.Bundle, LogKey: v})
	if !rep.Verified {
		t.Fatalf("%+v", rep.Checks)
	}
	var out bytes.Buffer
	if err := p.WriteReport(&out, rep, v, time.Now()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "<script") || !strings.Contains(out.String(), "Eve &lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the signer's name is not escaped in the report")
	}
}

// TestStampListKept covers a bundle whose index.json states no
// REVIEWED_HASH: the gate matched stamps by the .sdoc files, which the log
// alone cannot tell, so the package uses the stamp list stored when the
// release was recorded.
func TestStampListKept(t *testing.T) {
	bundle := filepath.Join(t.TempDir(), "bundle")
	releasetest.CopyDir(t, filepath.Join(releasetest.Testdata(), "bundle"), bundle)
	idx, err := os.ReadFile(filepath.Join(bundle, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	idx = regexp.MustCompile(`, "reviewed_hash": ("[0-9a-f]+"|null)`).ReplaceAll(idx, nil)
	if bytes.Contains(idx, []byte("reviewed_hash")) {
		t.Fatal("index.json still states reviewed hashes")
	}
	os.WriteFile(filepath.Join(bundle, "index.json"), idx, 0o644)
	sums, _ := os.ReadFile(filepath.Join(bundle, "SHA256SUMS"))
	sums = regexp.MustCompile(`(?m)^[0-9a-f]{64}  index\.json$`).ReplaceAll(sums, []byte(cas.Sum(idx).Hex()+"  index.json"))
	os.WriteFile(filepath.Join(bundle, "SHA256SUMS"), sums, 0o644)

	l, src := openLedger(t)
	reg := src.Registry
	v, _ := proofs.NewVerifier(l.PublicKey)
	// REQ-007 is approved again, with other content, after the signing and
	// before the recording: the latest stamp before the release is no
	// longer the one the gate matched.
	restamp := func() {
		docs, _ := release.ReadSDocDir(filepath.Join(releasetest.Testdata(), "sdoc-changed"))
		approval := release.Approval{PR: "99", Commit: "fff", Approver: "Someone Else", ApprovedAt: time.Now()}
		if _, err := reg.ScanStamps(t.Context(), docs, approval, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	// Without the kept list the package can only guess, and its stamps
	// check says the guess is not what was signed.
	s := releasetest.Record(t, reg, releasetest.Options{Bundle: bundle, BeforeRecord: restamp})
	p, err := Gather(t.Context(), src, s.Version)
	if err != nil {
		t.Fatal(err)
	}
	rep := p.Verify(t.Context(), VerifyOptions{Bundle: bundle, LogKey: v})
	if c, failed := rep.FirstFailure(); !failed || c.Name != "stamps" || !strings.Contains(c.Detail, "the manifest signs the stamp list") {
		t.Errorf("a rebuilt stamp list that differs from the signed one: first failure %+v", c)
	}
	// With the list kept at recording, the package names exactly the
	// stamps signed.
	s = releasetest.Record(t, reg, releasetest.Options{Version: "v0.2.0", Bundle: bundle, KeepStampList: true})
	if p, err = Gather(t.Context(), src, s.Version); err != nil {
		t.Fatal(err)
	}
	if rep := p.Verify(t.Context(), VerifyOptions{Bundle: bundle, LogKey: v}); !rep.Verified {
		t.Fatalf("the package with the kept stamp list: %+v", rep.Checks)
	}
	// A wrong stamp list is refused at record time, naming the digests.
	if err := release.CheckStampList(s.Manifest, []byte("REQ-001 00 1 sha256:00\n")); err == nil || !strings.Contains(err.Error(), "the manifest signs") {
		t.Errorf("CheckStampList with another list: %v", err)
	}
}
