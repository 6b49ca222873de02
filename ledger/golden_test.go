package ledger

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestEntryGolden pins the byte-exact encoding of one entry of each kind:
// auditors keep these bytes for years, so any change must be deliberate.
// Rebuild with go test ./ledger -run TestEntryGolden -update.
func TestEntryGolden(t *testing.T) {
	prev := cas.Sum([]byte("release-v0.9.0.json"))
	janePEM, janeID := testSignerKey(7)
	subjects := map[Kind]any{
		KindArtefact: sampleArtefact(),
		KindBundle:   Bundle{Digest: cas.Sum([]byte("listing")), Listing: cas.Sum([]byte("listing")), Files: 7, Size: 48213377, Release: "v1.0.0"},
		KindStamp: Stamp{UID: "REQ-042", ReviewedHash: "9f2c1e5d0b7a4c3e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70", Document: "reqs/pump.sdoc", DocumentDigest: cas.Sum([]byte("sdoc")),
			PR: "https://git.example.com/dhf/pull/17", Commit: "0a1b2c3d", Approver: "Jane Roe <jane@example.com>", ApprovedAt: "2026-11-20T09:30:00Z"},
		KindSigner: Signer{Action: "enroll", KeyID: janeID, PublicKey: janePEM,
			Name: "Jane Roe", Email: "jane@example.com", Role: "release-approver", ValidUntil: "2027-11-25T00:00:00Z", Reason: "QA lead"},
		KindRelease: Release{Version: "v1.0.0", Bundle: cas.Sum([]byte("listing")), Manifest: cas.Sum([]byte("manifest")), KeyID: janeID,
			Meaning: "approved-for-release", SignedAt: "2026-11-25T10:00:00Z", Previous: &prev},
	}
	for _, k := range Kinds() {
		p, err := prepare(Claim{Kind: k, Subject: subjects[k]}, "ci:dhf-main")
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		got := append(encodeEntry(k, "2026-11-25T12:00:00.000000Z", p.by, p.subject), '\n')
		path := filepath.Join("..", "testdata", "entries", string(k)+".json")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s entry encoding changed:\ngot  %s\nwant %s", k, got, want)
		}
		if _, err := ParseEntry(bytes.TrimSuffix(want, []byte("\n"))); err != nil {
			t.Errorf("%s: golden entry does not parse: %v", path, err)
		}
	}
}
