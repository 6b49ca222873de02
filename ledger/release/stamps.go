package release

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/proofs"
)

// ErrDuplicateUID is returned when a scan finds one UID in two documents.
var ErrDuplicateUID = errors.New("UID appears in more than one document")

// Approval says who approved reviewed content, in which PR and commit, and
// when: the provenance every stamp of one scan shares.
type Approval struct {
	PR         string
	Commit     string
	Approver   string
	ApprovedAt time.Time // zero: now
}

// SDocFile is an .sdoc file to scan: its path as recorded (relative to the
// repository), its content, and its parse.
type SDocFile struct {
	Path    string
	Content []byte
	Doc     evidence.SDocDocument
}

// ReadSDocDir reads and parses every .sdoc file under dir, each recorded
// by its slash-separated path relative to dir, sorted by path.
func ReadSDocDir(dir string) ([]SDocFile, error) {
	var out []SDocFile
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".sdoc") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		doc, err := evidence.ParseSDoc(filepath.ToSlash(rel), b)
		if err != nil {
			return err
		}
		out = append(out, SDocFile{Path: filepath.ToSlash(rel), Content: b, Doc: doc})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

// StampedEntry is a stamp entry found in the log.
type StampedEntry struct {
	Index    uint64
	Stamp    ledger.Stamp
	LoggedAt string
	LoggedBy string
	Digest   string // the entry digest (proofs.EntryDigest)
}

// Stamps returns every stamp entry for uid, in log order.
func (r *Registry) Stamps(ctx context.Context, uid string) ([]StampedEntry, error) {
	idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindStamp, UID: uid}, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make([]StampedEntry, 0, len(idx))
	for _, i := range idx {
		b, err := r.log.Entry(ctx, i)
		if err != nil {
			return nil, err
		}
		e, err := ledger.ParseEntry(b)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		var s ledger.Stamp
		if err := e.DecodeSubject(&s); err != nil {
			return nil, fmt.Errorf("stamp entry %d: %w", i, err)
		}
		if s.UID != uid {
			continue
		}
		out = append(out, StampedEntry{Index: i, Stamp: s, LoggedAt: e.LoggedAt, LoggedBy: e.LoggedBy, Digest: proofs.EntryDigest(b)})
	}
	return out, nil
}

// allStamps returns every stamp entry in the log by UID, in log order. It
// finds them with one index search and reads them in runs of consecutive
// entries: far cheaper than a search per UID when there are thousands.
func (r *Registry) allStamps(ctx context.Context) (map[string][]StampedEntry, error) {
	idx, err := r.log.Search(ctx, ledger.Query{Kind: ledger.KindStamp}, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]StampedEntry)
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && idx[j] == idx[j-1]+1 && j-i < 4096 {
			j++
		}
		entries, err := r.log.Entries(ctx, idx[i], idx[j-1]+1)
		if err != nil {
			return nil, err
		}
		for k, b := range entries {
			if err := addStamp(out, idx[i]+uint64(k), b); err != nil {
				return nil, err
			}
		}
		i = j
	}
	return out, nil
}

// addStamp decodes stamp entry n into out. Entries from the log were
// validated when appended and are covered by the tree (ledger audit
// re-checks them), so a plain decode will do; ParseEntry's
// canonical-form check is for entries from outside.
func addStamp(out map[string][]StampedEntry, n uint64, b []byte) error {
	var e struct {
		Kind     ledger.Kind  `json:"kind"`
		Subject  ledger.Stamp `json:"subject"`
		LoggedAt string       `json:"logged_at"`
		LoggedBy string       `json:"logged_by"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Kind != ledger.KindStamp {
		return fmt.Errorf("entry %d is not a stamp entry (kind %q): %v; run ledger audit", n, e.Kind, err)
	}
	out[e.Subject.UID] = append(out[e.Subject.UID], StampedEntry{Index: n, Stamp: e.Subject, LoggedAt: e.LoggedAt, LoggedBy: e.LoggedBy, Digest: proofs.EntryDigest(b)})
	return nil
}

// StampsByUID groups stamp entries (in log order) by UID, as the gate
// wants them.
func StampsByUID(entries []IndexedEntry) (map[string][]StampedEntry, error) {
	out := make(map[string][]StampedEntry)
	for _, e := range entries {
		if err := addStamp(out, e.Index, e.Entry); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Stamp appends one stamp, storing the document it came from as a blob
// (document nil means it is stored already, under s.DocumentDigest),
// unless the log has it already (see logged); then it returns the logged
// stamp's receipt, marked duplicate.
func (r *Registry) Stamp(ctx context.Context, s ledger.Stamp, document []byte, by string) (proofs.Receipt, error) {
	h, err := evidence.NormaliseReviewedHash(s.ReviewedHash)
	if err != nil {
		return proofs.Receipt{}, fmt.Errorf("%w: %s: %v", ledger.ErrInvalidEntry, s.UID, err)
	}
	s.ReviewedHash = h
	if s.ApprovedAt == "" {
		s.ApprovedAt = r.now().UTC().Format(time.RFC3339)
	}
	given := document != nil
	if given {
		d := cas.Sum(document)
		if !s.DocumentDigest.IsZero() && s.DocumentDigest != d {
			return proofs.Receipt{}, fmt.Errorf("document digest %s does not match the document given (%s)", s.DocumentDigest, d)
		}
		s.DocumentDigest = d
	}
	if err := ledger.CheckClaim(ledger.Claim{Kind: ledger.KindStamp, Subject: s}, by); err != nil {
		return proofs.Receipt{}, err
	}
	if err := checkStampText(s); err != nil {
		return proofs.Receipt{}, err
	}
	if at, err := time.Parse(time.RFC3339, s.ApprovedAt); err == nil && at.After(r.now().Add(MaxClockSkew)) {
		return proofs.Receipt{}, fmt.Errorf("%w: %s: approved_at %s is in the future by this ledger's clock", ledger.ErrInvalidEntry, s.UID, s.ApprovedAt)
	}
	if !given {
		// Sent over the API, the stamp names its document by digest: it
		// must be stored, and say what the stamp says.
		var err error
		if document, err = r.getBlob(ctx, s.DocumentDigest, evidence.MaxSDocSize); err != nil {
			return proofs.Receipt{}, fmt.Errorf("%w: %s: the stamp's document %s: %w (upload the .sdoc first)", ledger.ErrInvalidEntry, s.UID, s.DocumentDigest, err)
		}
	}
	if err := checkStampDocument(s, document); err != nil {
		return proofs.Receipt{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	have, err := r.Stamps(ctx, s.UID)
	if err != nil {
		return proofs.Receipt{}, err
	}
	if st := logged(have, s); st != nil {
		rc, err := r.log.Receipt(ctx, st.Index)
		rc.Duplicate = true
		return rc, err
	}
	if given {
		if _, err := r.putBytes(ctx, document); err != nil {
			return proofs.Receipt{}, fmt.Errorf("storing %s: %w", s.Document, err)
		}
	}
	return r.log.Append(ctx, ledger.Claim{Kind: ledger.KindStamp, Subject: s}, by)
}

// logged returns the stamp among have (one UID's, in log order) that s
// repeats, or nil. That is the latest with s's REVIEWED_HASH, if it names
// s's document: content approved before, in a requirement since moved to
// another document, is stamped again, so that the latest stamp of a UID
// says where it is now. Only the path counts, not the document's digest,
// which changes whenever another requirement in the file does.
func logged(have []StampedEntry, s ledger.Stamp) *StampedEntry {
	var last *StampedEntry
	for i := range have {
		if have[i].Stamp.ReviewedHash == s.ReviewedHash {
			last = &have[i]
		}
	}
	if last == nil || last.Stamp.Document != s.Document {
		return nil
	}
	return last
}

// checkStampText refuses a stamp whose text fields hold a bidirectional
// control character (U+202E and its kin), which makes text show as other
// text: "Eve\u202e>moc.elpmaxe@enaj< eoD enaJ" reads as Jane Doe's name.
// Other invisible characters (the joiners some scripts need) pass.
func checkStampText(s ledger.Stamp) error {
	for _, f := range []struct{ name, v string }{
		{"uid", s.UID}, {"approver", s.Approver}, {"pr", s.PR}, {"commit", s.Commit}, {"document", s.Document},
	} {
		for _, r := range f.v {
			if r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				return fmt.Errorf("%w: stamp %s has a bidirectional control character (U+%04X), which could make it read as other text", ledger.ErrInvalidEntry, f.name, r)
			}
		}
	}
	return nil
}

// checkStampDocument checks that the .sdoc document defines the stamp's
// UID with the stamp's REVIEWED_HASH: a stamp records what its document
// says, not what its sender claims.
func checkStampDocument(s ledger.Stamp, document []byte) error {
	doc, err := evidence.ParseSDoc(s.Document, document)
	if err != nil {
		return fmt.Errorf("%w: %s: the stamp's document is not a valid .sdoc: %w", ledger.ErrInvalidEntry, s.UID, err)
	}
	for _, n := range doc.Nodes {
		if n.UID != s.UID {
			continue
		}
		if n.ReviewedHash != s.ReviewedHash {
			return fmt.Errorf("%w: %s:%d: %s has REVIEWED_HASH %q, not %s; nothing was appended", ledger.ErrInvalidEntry, s.Document, n.Line, n.UID, n.ReviewedHash, s.ReviewedHash)
		}
		return nil
	}
	return fmt.Errorf("%w: %s defines no %s; nothing was appended", ledger.ErrInvalidEntry, s.Document, s.UID)
}

// ScanResult is what a scan did.
type ScanResult struct {
	Nodes    int              // nodes with a UID seen
	Stamped  int              // nodes with a REVIEWED_HASH
	Appended []proofs.Receipt // new stamps
	Existing int              // stamps already in the log
}

// ScanStamps appends a stamp for every (UID, REVIEWED_HASH) in the files
// not yet in the log as it is there (in the same document; see logged),
// all with the same approval. It checks everything
// first and appends nothing if a UID appears in two documents or a stamp
// would not be a valid entry. Running it twice appends nothing new.
func (r *Registry) ScanStamps(ctx context.Context, files []SDocFile, a Approval, by string) (ScanResult, error) {
	if a.ApprovedAt.IsZero() {
		a.ApprovedAt = r.now()
	}
	if a.ApprovedAt.After(r.now().Add(MaxClockSkew)) {
		return ScanResult{}, fmt.Errorf("%w: approved_at %s is in the future by this ledger's clock", ledger.ErrInvalidEntry, a.ApprovedAt.UTC().Format(time.RFC3339))
	}
	stamps, res, err := PlanStamps(files, a, by)
	if err != nil {
		return ScanResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := r.allStamps(ctx)
	if err != nil {
		return ScanResult{}, err
	}
	var fresh []ledger.Stamp
	for _, s := range stamps {
		if logged(all[s.UID], s) != nil {
			res.Existing++
			continue
		}
		fresh = append(fresh, s)
	}
	if len(fresh) == 0 {
		return res, nil
	}
	// Each document once, then the stamps several at a time so that the
	// log's group commit batches them.
	for _, f := range files {
		if _, err := r.putBytes(ctx, f.Content); err != nil {
			return ScanResult{}, fmt.Errorf("storing %s: %w", f.Path, err)
		}
	}
	rcs, err := r.appendAll(ctx, ledger.KindStamp, len(fresh), func(i int) any { return fresh[i] }, by)
	res.Appended = rcs
	return res, err
}

// appendAll appends n claims of one kind, up to 32 at a time, and returns
// the receipts of those appended, in claim order; the first error stops
// the rest.
func (r *Registry) appendAll(ctx context.Context, k ledger.Kind, n int, subject func(int) any, by string) ([]proofs.Receipt, error) {
	const parallel = 32
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rcs := make([]proofs.Receipt, n)
	ok := make([]bool, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rc, err := r.log.Append(ctx, ledger.Claim{Kind: k, Subject: subject(i)}, by)
			if err != nil {
				cancel(fmt.Errorf("appending %s entry %d of %d: %w", k, i+1, n, err))
				return
			}
			rcs[i], ok[i] = rc, true
		}()
	}
	wg.Wait()
	out := rcs[:0]
	for i := range rcs {
		if ok[i] {
			out = append(out, rcs[i])
		}
	}
	return out, context.Cause(ctx)
}

// PlanStamps checks the files of a scan and returns the stamp of every
// node with a REVIEWED_HASH, all with approval a (whose ApprovedAt must be
// set), checked as entries by appender by. It refuses a UID defined twice
// and any stamp that would not be a valid entry, naming file and line.
func PlanStamps(files []SDocFile, a Approval, by string) ([]ledger.Stamp, ScanResult, error) {
	where := map[string]string{}
	var stamps []ledger.Stamp
	var res ScanResult
	for _, f := range files {
		for _, n := range f.Doc.Nodes {
			res.Nodes++
			if other, ok := where[n.UID]; ok {
				return nil, ScanResult{}, fmt.Errorf("%w: %s is in %s and %s:%d; each UID must be defined once", ErrDuplicateUID, n.UID, other, f.Path, n.Line)
			}
			where[n.UID] = fmt.Sprintf("%s:%d", f.Path, n.Line)
			if n.ReviewedHash == "" {
				continue
			}
			res.Stamped++
			s := ledger.Stamp{UID: n.UID, ReviewedHash: n.ReviewedHash, Document: f.Path, DocumentDigest: cas.Sum(f.Content),
				PR: a.PR, Commit: a.Commit, Approver: a.Approver, ApprovedAt: a.ApprovedAt.UTC().Format(time.RFC3339)}
			if err := ledger.CheckClaim(ledger.Claim{Kind: ledger.KindStamp, Subject: s}, by); err != nil {
				return nil, ScanResult{}, fmt.Errorf("%s:%d: %w", f.Path, n.Line, err)
			}
			if err := checkStampText(s); err != nil {
				return nil, ScanResult{}, fmt.Errorf("%s:%d: %w", f.Path, n.Line, err)
			}
			stamps = append(stamps, s)
		}
	}
	return stamps, res, nil
}

// Offender is a requirement that blocks a release, and what to do.
type Offender struct {
	UID     string `json:"uid"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// GateResult is the outcome of the release gate.
type GateResult struct {
	Requirements int            `json:"requirements"` // regulated requirements
	Reviewed     int            `json:"reviewed"`
	Stamps       int            `json:"stamps"` // regulated requirements with a matching stamp
	StampList    cas.Digest     `json:"stamp_list"`
	Offenders    []Offender     `json:"offenders"`
	Matched      []StampedEntry `json:"-"`
}

// Passed reports whether nothing blocks the release.
func (g GateResult) Passed() bool { return len(g.Offenders) == 0 }

// Blocking returns how many requirements block the release (one may have
// several offences).
func (g GateResult) Blocking() int {
	uids := map[string]bool{}
	for _, o := range g.Offenders {
		uids[o.UID] = true
	}
	return len(uids)
}

// StampListText is the list the gate's StampList digest is the SHA-256 of:
// one line per regulated requirement, sorted by UID,
// "<uid> <reviewed_hash> <log index> <entry digest>\n". A UID may hold
// spaces (StrictDoc's may, as in "SYS 1"); the other three fields cannot, so
// a line splits at its last three spaces. ParseStampList reads it back.
func StampListText(matched []StampedEntry) []byte {
	sorted := append([]StampedEntry(nil), matched...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Stamp.UID < sorted[j].Stamp.UID })
	var b bytes.Buffer
	for _, m := range sorted {
		fmt.Fprintf(&b, "%s %s %d %s\n", m.Stamp.UID, m.Stamp.ReviewedHash, m.Index, m.Digest)
	}
	return b.Bytes()
}

// StampLine is one line of a stamp list.
type StampLine struct {
	UID          string
	ReviewedHash string
	Index        uint64
	EntryDigest  string
}

// stampLineForm says what a line of a stamp list is, for errors.
const stampLineForm = `want "<uid> <reviewed_hash> <index> <entry digest>\n"`

// ParseStampList parses a stamp list as StampListText writes it for the
// release gate, and nothing else, so that one signed digest names one
// list: each line ends with "\n"; its UID is UTF-8 without control
// characters or blanks at either end (as index.json and the stamps
// require), and the UIDs are in increasing byte order, each once; its
// REVIEWED_HASH is 32 to 128 lower-case hex digits; its index is decimal
// without sign or leading zeros; its entry digest is "sha256:" and 64
// lower-case hex digits. An empty list has no lines.
func ParseStampList(b []byte) ([]StampLine, error) {
	var out []StampLine
	for n, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue // after the final newline
		}
		l, err := parseStampLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if k := len(out); k > 0 && out[k-1].UID >= l.UID {
			return nil, fmt.Errorf("line %d: UID %q is not after %q: the list is sorted by UID, one line each", n+1, short(l.UID), short(out[k-1].UID))
		}
		out = append(out, l)
	}
	return out, nil
}

// parseStampLine parses one line of a stamp list, with its newline.
func parseStampLine(line string) (StampLine, error) {
	text, ok := strings.CutSuffix(line, "\n")
	if !ok {
		return StampLine{}, fmt.Errorf("the last line does not end with a newline; %s", stampLineForm)
	}
	// The UID may hold spaces; the three fields after it cannot.
	var f [4]string
	rest := text
	for i := 3; i > 0; i-- {
		j := strings.LastIndexByte(rest, ' ')
		if j < 0 {
			return StampLine{}, fmt.Errorf("too few fields; %s", stampLineForm)
		}
		rest, f[i] = rest[:j], rest[j+1:]
	}
	f[0] = rest
	uid, hash, index, digest := f[0], f[1], f[2], f[3]
	switch {
	case uid == "":
		return StampLine{}, fmt.Errorf("no UID; %s", stampLineForm)
	case !utf8.ValidString(uid):
		return StampLine{}, fmt.Errorf("UID %q is not UTF-8", short(uid))
	case strings.TrimSpace(uid) != uid:
		return StampLine{}, fmt.Errorf("UID %q has blanks around it; %s, one space apart", short(uid), stampLineForm)
	case strings.ContainsFunc(uid, unicode.IsControl):
		return StampLine{}, fmt.Errorf("UID %q has a control character", short(uid))
	}
	if h, err := evidence.NormaliseReviewedHash(hash); err != nil || h != hash {
		return StampLine{}, fmt.Errorf("%s: reviewed_hash %q is not 32 to 128 lower-case hex digits", uid, short(hash))
	}
	i, err := strconv.ParseUint(index, 10, 64)
	if err != nil || strconv.FormatUint(i, 10) != index {
		return StampLine{}, fmt.Errorf("%s: index %q is not a log index in decimal, without sign or leading zeros", uid, short(index))
	}
	if _, err := cas.ParseDigest(digest); err != nil {
		return StampLine{}, fmt.Errorf("%s: entry digest: %w", uid, err)
	}
	return StampLine{UID: uid, ReviewedHash: hash, Index: i, EntryDigest: digest}, nil
}

// Gate checks, before a release is cut, that every regulated requirement
// of the index is reviewed, not suspect, and stamped in the log with the
// REVIEWED_HASH it has now: the one in its .sdoc file when docs are given
// (found by UID across them), else the one index.json states. Each
// problem is an Offender naming the UID and what to do.
func (r *Registry) Gate(ctx context.Context, idx evidence.Index, docs []SDocFile) (GateResult, error) {
	all, err := r.allStamps(ctx)
	if err != nil {
		return GateResult{}, err
	}
	return Gate(idx, docs, all)
}

// Gate is the release gate over stamps already read (StampsByUID), for a
// log read through a node.
func Gate(idx evidence.Index, docs []SDocFile, all map[string][]StampedEntry) (GateResult, error) {
	current := map[string]evidence.SDocNode{}
	place := map[string]string{}
	for _, f := range docs {
		for _, n := range f.Doc.Nodes {
			if other, ok := place[n.UID]; ok {
				return GateResult{}, fmt.Errorf("%w: %s is in %s and %s:%d", ErrDuplicateUID, n.UID, other, f.Path, n.Line)
			}
			place[n.UID] = fmt.Sprintf("%s:%d", f.Path, n.Line)
			current[n.UID] = n
		}
	}
	var g GateResult
	add := func(uid, problem, fix string) { g.Offenders = append(g.Offenders, Offender{uid, problem, fix}) }
	for _, req := range idx.Regulated() {
		g.Requirements++
		if req.State == "reviewed" && !req.Suspect {
			g.Reviewed++
		}
		switch {
		case req.Suspect:
			add(req.UID, "is suspect (an upstream item changed since it was reviewed)", "review it again and clear the suspect flag")
		case req.State != "reviewed":
			add(req.UID, fmt.Sprintf("is %q, not reviewed", req.State), "review and approve it, then regenerate index.json")
		}
		want := req.ReviewedHash
		if docs != nil {
			n, ok := current[req.UID]
			h := n.ReviewedHash
			switch {
			case !ok:
				add(req.UID, "is in index.json but in none of the .sdoc files given", "check the --sdoc directory, or remove the UID from index.json")
				continue
			case h == "":
				add(req.UID, fmt.Sprintf("has no REVIEWED_HASH in %s", place[req.UID]), "approve it in a PR, which writes its REVIEWED_HASH")
				continue
			case len(h) == 64 && h != n.ContentHash():
				// A REVIEWED_HASH of SHA-256 length is checked against the
				// content it approves (evidence.SDocNode.ContentHash); one
				// of another length follows another convention and is not.
				add(req.UID, fmt.Sprintf("has REVIEWED_HASH %s in %s, but its UID, TITLE and STATEMENT now hash to %s: it was edited after its review", short(h), place[req.UID], short(n.ContentHash())),
					"review the change in a PR, which writes the new REVIEWED_HASH, then run `ledger stamp scan`")
			case want != "" && want != h:
				add(req.UID, fmt.Sprintf("index.json says REVIEWED_HASH %s but %s has %s", short(want), place[req.UID], short(h)), "regenerate index.json from the current .sdoc files")
			}
			want = h
		}
		if want == "" {
			add(req.UID, "has no known current REVIEWED_HASH (index.json states none)", "give the .sdoc files (--sdoc DIR) or a reviewed_hash in index.json")
			continue
		}
		stamps := all[req.UID]
		if len(stamps) == 0 {
			add(req.UID, "has no stamp in the log", "run `ledger stamp scan` on the .sdoc files after the approving PR merges")
			continue
		}
		var match *StampedEntry
		for i := range stamps {
			if stamps[i].Stamp.ReviewedHash == want {
				match = &stamps[i] // the latest matching stamp
			}
		}
		if match == nil {
			var logged []string
			for _, s := range stamps {
				logged = append(logged, short(s.Stamp.ReviewedHash))
			}
			add(req.UID, fmt.Sprintf("has REVIEWED_HASH %s, but the log's stamps are for %s", short(want), strings.Join(logged, ", ")),
				"the content changed after its last approval: approve it in a PR and run `ledger stamp scan`")
			continue
		}
		g.Stamps++
		g.Matched = append(g.Matched, *match)
	}
	// With the .sdoc files given, what they say of regulation and review
	// must agree with index.json, which may be stale: a requirement
	// marked REGULATED: Yes that index.json omits or does not list as
	// regulated, or a regulated one whose STATUS is not Reviewed.
	if docs != nil {
		listed, reviewed := map[string]bool{}, map[string]bool{}
		for _, req := range idx.Regulated() {
			listed[req.UID], reviewed[req.UID] = true, req.State == "reviewed"
		}
		var uids []string
		for uid := range current {
			uids = append(uids, uid)
		}
		sort.Strings(uids)
		for _, uid := range uids {
			n := current[uid]
			regulated := strings.EqualFold(n.Fields["REGULATED"], "yes")
			switch {
			case regulated && !listed[uid]:
				add(uid, fmt.Sprintf("is REGULATED: Yes in %s but not a regulated requirement of index.json", place[uid]), "regenerate index.json from the current .sdoc files")
			case reviewed[uid] && n.Fields["STATUS"] != "" && !strings.EqualFold(n.Fields["STATUS"], "reviewed"):
				add(uid, fmt.Sprintf("has STATUS: %s in %s, while index.json says it is reviewed", n.Fields["STATUS"], place[uid]), "review and approve it, then regenerate index.json")
			}
		}
	}
	if g.Requirements == 0 {
		add("(none)", "index.json lists no regulated requirement", "a release needs its regulated requirements listed; check the index")
	}
	g.StampList = cas.Sum(StampListText(g.Matched))
	return g, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
