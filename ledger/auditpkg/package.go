// Package auditpkg builds and verifies audit packages: one zip per
// release holding everything an auditor needs, years later and offline, to
// check that release with the log's public key alone.
//
// A package holds the signed manifest, the signed listing, the release
// entry's receipt as the log issued it, log.pub, the log's checkpoint when
// the package was made and a consistency proof from the receipt's
// checkpoint to it, the signer's public key with every enrolment and
// revocation entry for it, the signed stamp list with a receipt for each
// stamp, and a README saying how to verify it all. Nothing in it is
// trusted: Verify checks each piece against the log key the auditor gives.
package auditpkg

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"text/template"
	"time"

	_ "embed"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Format names this layout in package.json.
const Format = "evidence-ledger-audit-package/v1"

// Limits on what Read accepts, per file and for the whole package.
const (
	MaxListingSize = 64 << 20
	MaxProofsSize  = 64 << 20 // signer-entries.jsonl, stamps.jsonl
	MaxPackageSize = 256 << 20
)

// The files of a package; some are named after the release version.
const (
	fileReadme        = "README.txt"
	fileMeta          = "package.json"
	fileLogKey        = "log.pub"
	fileCheckpoint    = "checkpoint.txt"
	fileConsistency   = "consistency.json"
	fileSignerKey     = "signer.pub"
	fileSignerEntries = "signer-entries.jsonl"
	fileStampList     = "stamps.txt"
	fileStamps        = "stamps.jsonl"
)

// Meta is package.json: what the package is of, and when it was made.
// It is a label, not evidence; Verify checks it agrees with the proofs.
type Meta struct {
	Format       string `json:"format"`
	Version      string `json:"version"`
	Origin       string `json:"origin"`
	ReleaseIndex uint64 `json:"release_index"`
	TreeSize     uint64 `json:"tree_size"`
	CreatedAt    string `json:"created_at"`
}

// Package is an audit package's files.
type Package struct {
	Meta          Meta
	Manifest      []byte // the signed manifest, release-vX.Y.Z.json
	Listing       []byte // the signed listing, release-vX.Y.Z.listing
	Receipt       []byte // the release entry's receipt as issued
	LogKey        []byte // log.pub
	Checkpoint    []byte // the log's checkpoint when the package was made
	Consistency   []byte // from the receipt's checkpoint to Checkpoint
	SignerKey     []byte // the signer's public key, PEM
	SignerEntries []byte // a receipt per signer entry for the key, JSON Lines
	StampList     []byte // the signed stamp list (release.StampListText)
	Stamps        []byte // a receipt per stamp in the list, JSON Lines
}

// Source is what a package is gathered from: a ledger's log, its registry
// and blob store, and its public key.
type Source struct {
	Log       *ledger.Log
	Registry  *release.Registry
	Blobs     cas.Store
	PublicKey string // log.pub
}

// Names are the file names of a release's record: as release sign and
// release record write them beside each other, and as packages hold them.
type Names struct {
	Package  string // release-vX.Y.Z-audit.zip
	Manifest string // release-vX.Y.Z.json
	Listing  string // release-vX.Y.Z.listing
	Receipt  string // release-vX.Y.Z.receipt.json
	Stamps   string // release-vX.Y.Z.stamps
}

// NamesFor returns the file names for a version.
func NamesFor(version string) Names {
	base := signing.SubjectName(version)
	return Names{Package: base + "-audit.zip", Manifest: base + ".json", Listing: base + ".listing", Receipt: base + ".receipt.json", Stamps: base + ".stamps"}
}

// FileName is the package's conventional file name.
func (p *Package) FileName() string { return NamesFor(p.Meta.Version).Package }

func (p *Package) manifestName() string { return NamesFor(p.Meta.Version).Manifest }
func (p *Package) listingName() string  { return NamesFor(p.Meta.Version).Listing }
func (p *Package) receiptName() string  { return NamesFor(p.Meta.Version).Receipt }

// Gather collects the package of a recorded release from the log as it
// stands: every proof in it leads to the one checkpoint read at the start.
// An unknown version is release.ErrUnknownRelease.
func Gather(ctx context.Context, src Source, version string) (*Package, error) {
	if err := ledger.ValidateVersion(version); err != nil {
		return nil, err
	}
	cp, size := src.Log.Checkpoint()
	ts, err := src.Registry.Source(ctx)
	if err != nil {
		return nil, err
	}
	rel, rows, err := ts.TraceRelease(version)
	if err != nil {
		return nil, err
	}
	if rel.Index >= size {
		return nil, fmt.Errorf("release %s at index %d is past the checkpoint read (size %d); try again", version, rel.Index, size)
	}
	p := &Package{
		Meta:       Meta{Format: Format, Version: version, Origin: src.Log.Origin(), ReleaseIndex: rel.Index, TreeSize: size, CreatedAt: time.Now().UTC().Format(time.RFC3339)},
		LogKey:     []byte(strings.TrimSpace(src.PublicKey) + "\n"),
		Checkpoint: cp,
	}
	if p.Manifest, err = ts.Blob(rel.Release.Manifest, signing.MaxManifestSize); err != nil {
		return nil, fmt.Errorf("the manifest of %s: %w", version, err)
	}
	if p.Listing, err = ts.Blob(rel.Release.Bundle, MaxListingSize); err != nil {
		return nil, fmt.Errorf("the listing of %s: %w", version, err)
	}
	rc, err := src.Log.FirstReceipt(ctx, rel.Index)
	if err != nil {
		return nil, err
	}
	if p.Receipt, err = json.MarshalIndent(rc, "", "  "); err != nil {
		return nil, err
	}
	cons, err := src.Log.ProveConsistency(ctx, rc.Inclusion.TreeSize, size)
	if err != nil {
		return nil, err
	}
	if p.Consistency, err = json.MarshalIndent(cons, "", "  "); err != nil {
		return nil, err
	}

	// The signer's key and every enrolment or revocation of it.
	signers, err := src.Log.Search(ctx, ledger.Query{Kind: ledger.KindSigner, KeyID: rel.Release.KeyID}, 0, 0)
	if err != nil {
		return nil, err
	}
	var entries bytes.Buffer
	for _, i := range signers {
		if i >= size {
			continue
		}
		rc, err := src.Log.ReceiptAt(ctx, i, size)
		if err != nil {
			return nil, err
		}
		if err := writeLine(&entries, rc); err != nil {
			return nil, err
		}
		if p.SignerKey == nil {
			e, err := ledger.ParseEntry(rc.Entry)
			if err != nil {
				return nil, err
			}
			var s ledger.Signer
			if err := e.DecodeSubject(&s); err != nil {
				return nil, err
			}
			if s.Action == ledger.SignerEnroll {
				p.SignerKey = []byte(s.PublicKey)
			}
		}
	}
	p.SignerEntries = entries.Bytes()

	if p.StampList, err = stampList(ts, p.Manifest, rows); err != nil {
		return nil, err
	}
	lines, err := release.ParseStampList(p.StampList)
	if err != nil {
		return nil, fmt.Errorf("the stamp list of %s: %w", version, err)
	}
	var stamps bytes.Buffer
	for _, l := range lines {
		rc, err := src.Log.ReceiptAt(ctx, l.Index, size)
		if err != nil {
			return nil, err
		}
		if err := writeLine(&stamps, rc); err != nil {
			return nil, err
		}
	}
	p.Stamps = stamps.Bytes()
	return p, nil
}

// stampList returns the stamp list the release gate matched when the
// release was signed: the one stored at record time (release sign writes
// it beside the manifest), found by the digest the manifest signs; or,
// for a release recorded without it, the list rebuilt from the log: for
// each regulated UID, the latest stamp logged before the release with
// the REVIEWED_HASH its index.json states (the one the gate picks; a UID
// has several when its requirement moved between documents), else the
// latest before the release. A rebuilt list that differs
// from the signed one fails the package's stamps check, which says so.
func stampList(ts release.TraceSource, manifest []byte, rows []release.TraceRow) ([]byte, error) {
	m, err := signing.ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	if d := m.Predicate().StampList(); d != nil {
		b, err := ts.Blob(*d, MaxProofsSize)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, cas.ErrNotFound) {
			return nil, err
		}
	}
	var matched []release.StampedEntry
	for _, row := range rows {
		if n := len(row.Stamps); n > 0 {
			matched = append(matched, row.Stamps[n-1])
		}
	}
	return release.StampListText(matched), nil
}

func writeLine(w *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Write(b)
	w.WriteByte('\n')
	return nil
}

//go:embed README.txt.tmpl
var readmeText string

var readme = template.Must(template.New("README").Parse(readmeText))

// files lists the package's files in the order they are written.
func (p *Package) files() ([]namedFile, error) {
	meta, err := json.MarshalIndent(p.Meta, "", "  ")
	if err != nil {
		return nil, err
	}
	var rd bytes.Buffer
	if err := readme.Execute(&rd, map[string]any{
		"Meta": p.Meta, "Manifest": p.manifestName(), "Listing": p.listingName(), "Receipt": p.receiptName(),
		"Package": p.FileName(), "Checkpoint": fileCheckpoint, "Consistency": fileConsistency, "LogKey": fileLogKey,
		"SignerKey": fileSignerKey, "SignerEntries": fileSignerEntries, "StampList": fileStampList, "Stamps": fileStamps,
	}); err != nil {
		return nil, err
	}
	return []namedFile{
		{fileReadme, rd.Bytes()},
		{fileMeta, append(meta, '\n')},
		{p.manifestName(), p.Manifest},
		{p.listingName(), p.Listing},
		{p.receiptName(), p.Receipt},
		{fileLogKey, p.LogKey},
		{fileCheckpoint, p.Checkpoint},
		{fileConsistency, p.Consistency},
		{fileSignerKey, p.SignerKey},
		{fileSignerEntries, p.SignerEntries},
		{fileStampList, p.StampList},
		{fileStamps, p.Stamps},
	}, nil
}

type namedFile struct {
	name string
	data []byte
}

// dir is the folder every file of the package sits in.
func (p *Package) dir() string { return strings.TrimSuffix(p.FileName(), ".zip") }

// WriteZip writes the package as a zip, every file in one folder named
// after it (release-vX.Y.Z-audit/).
func (p *Package) WriteZip(w io.Writer) error {
	files, err := p.files()
	if err != nil {
		return err
	}
	mod, _ := time.Parse(time.RFC3339, p.Meta.CreatedAt)
	z := zip.NewWriter(w)
	for _, f := range files {
		fw, err := z.CreateHeader(&zip.FileHeader{Name: p.dir() + "/" + f.name, Method: zip.Deflate, Modified: mod})
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.data); err != nil {
			return err
		}
	}
	return z.Close()
}

// ErrInvalidPackage is the error of Read for a file that is not an audit
// package.
var ErrInvalidPackage = errors.New("not a valid audit package")

// Read reads an audit package from a zip. It checks the layout, not the
// contents: a folder release-vX.Y.Z-audit/ holding each file of the
// format exactly once and nothing else, within the size limits. It does
// not trust the zip's stated sizes.
func Read(r io.ReaderAt, size int64) (*Package, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPackage, fmt.Sprintf(format, args...))
	}
	if size > MaxPackageSize {
		return nil, bad("%d bytes is over the %d-byte limit", size, MaxPackageSize)
	}
	z, err := zip.NewReader(r, size)
	if err != nil {
		return nil, bad("%v", err)
	}
	got := map[string][]byte{}
	dir := ""
	var total int64
	for _, f := range z.File {
		name := f.Name
		if name == "" || strings.ContainsAny(name, "\\\x00") || path.IsAbs(name) || path.Clean(name) != strings.TrimSuffix(name, "/") || strings.HasPrefix(name, "../") {
			return nil, bad("hostile or malformed path %q in the zip", name)
		}
		d, base, ok := strings.Cut(name, "/")
		if !ok || strings.Contains(base, "/") || !strings.HasPrefix(d, "release-") || !strings.HasSuffix(d, "-audit") {
			return nil, bad("%q is not in a release-vX.Y.Z-audit/ folder", name)
		}
		if dir == "" {
			dir = d
		} else if d != dir {
			return nil, bad("files from two folders, %s/ and %s/", dir, d)
		}
		if base == "" { // the folder itself
			continue
		}
		if _, dup := got[base]; dup {
			return nil, bad("%s appears twice", name)
		}
		limit := int64(MaxProofsSize)
		switch {
		case strings.HasSuffix(base, ".json") && base != fileConsistency && base != fileMeta && !strings.HasSuffix(base, ".receipt.json"):
			limit = signing.MaxManifestSize
		case base == fileMeta || base == fileLogKey || base == fileCheckpoint || base == fileSignerKey:
			limit = 64 << 10
		case strings.HasSuffix(base, ".receipt.json"):
			limit = proofs.MaxReceiptSize
		}
		rc, err := f.Open()
		if err != nil {
			return nil, bad("%s: %v", name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		rc.Close()
		if err != nil {
			return nil, bad("%s: %v", name, err)
		}
		if int64(len(b)) > limit {
			return nil, bad("%s is over its %d-byte limit", name, limit)
		}
		if total += int64(len(b)); total > MaxPackageSize {
			return nil, bad("the files add up to over %d bytes", MaxPackageSize)
		}
		got[base] = b
	}
	if dir == "" {
		return nil, bad("the zip is empty")
	}
	p := &Package{}
	meta, ok := got[fileMeta]
	if !ok {
		return nil, bad("no %s in %s/", fileMeta, dir)
	}
	dec := json.NewDecoder(bytes.NewReader(meta))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p.Meta); err != nil {
		return nil, bad("%s: %v", fileMeta, err)
	}
	if p.Meta.Format != Format {
		return nil, bad("%s says format %q; this ledger reads %q", fileMeta, p.Meta.Format, Format)
	}
	if err := ledger.ValidateVersion(p.Meta.Version); err != nil {
		return nil, bad("%s: %v", fileMeta, err)
	}
	if dir != p.dir() {
		return nil, bad("the folder is %s/ but %s is for %s", dir, fileMeta, p.Meta.Version)
	}
	want := map[string]*[]byte{
		p.manifestName(): &p.Manifest, p.listingName(): &p.Listing, p.receiptName(): &p.Receipt,
		fileLogKey: &p.LogKey, fileCheckpoint: &p.Checkpoint, fileConsistency: &p.Consistency,
		fileSignerKey: &p.SignerKey, fileSignerEntries: &p.SignerEntries, fileStampList: &p.StampList, fileStamps: &p.Stamps,
	}
	for name, dst := range want {
		b, ok := got[name]
		if !ok {
			return nil, bad("%s/%s is missing", dir, name)
		}
		*dst = b
	}
	for name := range got {
		if _, ok := want[name]; !ok && name != fileMeta && name != fileReadme {
			return nil, bad("unexpected file %s/%s", dir, name)
		}
	}
	return p, nil
}
