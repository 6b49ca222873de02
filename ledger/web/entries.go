package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/proofs"
)

// link is a link an entry page offers for one of its subject's fields.
type link struct {
	Field string
	Value string
	Href  string
	Text  string
	// Download names the file a blob link saves as; empty for pages.
	Download string
}

// entryPage is the data of an entry page.
type entryPage struct {
	Index    uint64
	Kind     ledger.Kind
	JSON     string // the entry, indented
	Digest   string
	LoggedAt string
	LoggedBy string
	Links    []link
	TreeSize uint64
}

func (p *Pages) entry(w http.ResponseWriter, r *http.Request) error {
	s := r.PathValue("index")
	i, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(i, 10) != s {
		return badRequest("entry index %q is not a number such as 0 or 42", truncate(s))
	}
	size := p.opts.Log.Size()
	if i >= size {
		return notFound("this log holds %d entries, numbered from 0; there is no entry %d", size, i)
	}
	b, err := p.opts.Log.Entry(r.Context(), i)
	if err != nil {
		return err
	}
	e, err := ledger.ParseEntry(b)
	if err != nil {
		return fmt.Errorf("entry %d: %w", i, err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b, "", "  "); err != nil {
		return fmt.Errorf("entry %d: %w", i, err)
	}
	links, err := subjectLinks(e)
	if err != nil {
		return fmt.Errorf("entry %d: %w", i, err)
	}
	data := entryPage{Index: i, Kind: e.Kind, JSON: pretty.String(), Digest: proofs.EntryDigest(b),
		LoggedAt: e.LoggedAt, LoggedBy: e.LoggedBy, Links: links, TreeSize: size}
	return p.render(w, http.StatusOK, "entry", fmt.Sprintf("Entry %d", i), data)
}

// subjectLinks lists links for an entry's subject: its release's page,
// each digest's blob and search, a key id's or UID's search.
func subjectLinks(e ledger.Entry) ([]link, error) {
	var fields map[string]any
	if err := json.Unmarshal(e.Subject, &fields); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []link
	if v, ok := fields["version"].(string); ok && e.Kind == ledger.KindRelease {
		out = append(out, link{Field: "version", Value: v, Href: "/releases/" + url.PathEscape(v), Text: "release page"})
	}
	name, _ := fields["name"].(string)
	for _, k := range keys {
		v, ok := fields[k].(string)
		if !ok {
			continue
		}
		switch {
		case k == "release":
			out = append(out, link{Field: k, Value: v, Href: "/releases/" + url.PathEscape(v), Text: "release page"})
		case k == "uid" || k == "key_id":
			out = append(out, link{Field: k, Value: v, Href: searchHref(v, ""), Text: "entries naming it"})
		default:
			d, err := cas.ParseDigest(v)
			if err != nil {
				continue
			}
			download := d.Hex()
			if k == "digest" && name != "" {
				download = path.Base(name)
			}
			out = append(out,
				link{Field: k, Value: v, Href: "/v1/blobs/" + d.String(), Text: "download the blob", Download: download},
				link{Field: k, Value: v, Href: searchHref(v, ""), Text: "entries naming it"})
		}
	}
	return out, nil
}

func searchHref(q string, kind ledger.Kind) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if kind != "" {
		v.Set("kind", string(kind))
	}
	return "/search?" + v.Encode()
}

// searchLimit is how many entries a search page lists.
const searchLimit = 50

// result is one entry found by a search.
type result struct {
	Index    uint64
	Kind     ledger.Kind
	Summary  string
	LoggedAt string
	LoggedBy string
}

// searchPage is the data of the search page.
type searchPage struct {
	Q       string
	Kind    string
	Kinds   []ledger.Kind
	Message string // a hint, or what was wrong with the query
	What    string // what was searched for, in words
	Results []result
	Release string // a recorded release the query names
	Next    string // the next page's address
}

func (p *Pages) search(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query()
	data := searchPage{Q: strings.TrimSpace(q.Get("q")), Kind: q.Get("kind"), Kinds: ledger.Kinds()}
	fail := func(format string, args ...any) error {
		data.Message = fmt.Sprintf(format, args...)
		return p.render(w, http.StatusBadRequest, "search", "Search", data)
	}
	var kind ledger.Kind
	if data.Kind != "" {
		k, err := ledger.ParseKind(data.Kind)
		if err != nil {
			return fail("%v", err)
		}
		kind = k
	}
	var start uint64
	if v := q.Get("start"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fail("start %q is not an entry index", truncate(v))
		}
		start = n
	}
	var queries []ledger.Query
	switch term := data.Q; {
	case term == "" && kind == "":
		data.Message = "Search by a digest (sha256:…), a REVIEWED_HASH (its hex digits), a requirement UID (such as REQ-001) or a release version (such as v0.1.0), or choose a kind of entry."
		return p.render(w, http.StatusOK, "search", "Search", data)
	case term == "":
		queries = []ledger.Query{{Kind: kind}}
		data.What = fmt.Sprintf("%s entries", kind)
	case strings.HasPrefix(strings.ToLower(term), "sha256:"):
		d, err := cas.ParseDigest(strings.ToLower(term))
		if err != nil {
			return fail("%q is not a digest: write sha256: and 64 hex digits", truncate(term))
		}
		data.Q = d.String()
		queries = []ledger.Query{{Digest: d.String(), Kind: kind}, {KeyID: d.String(), Kind: kind}}
		data.What = "entries naming " + d.String()
	case isReviewedHash(term):
		// Bare hex digits may be a REVIEWED_HASH (the SHA-256 of a
		// requirement's text, which names no blob) as well as a digest
		// without its sha256: prefix, or a UID: search for each it can be.
		h := strings.ToLower(term)
		data.Q = h
		queries = []ledger.Query{{ReviewedHash: h, Kind: kind}}
		if len(h) == 64 {
			queries = append(queries, ledger.Query{Digest: "sha256:" + h, Kind: kind}, ledger.Query{KeyID: "sha256:" + h, Kind: kind})
			data.What = "entries with " + h + " as a blob digest, key id or REVIEWED_HASH"
		} else {
			queries = append(queries, ledger.Query{UID: term, Kind: kind})
			data.What = "entries with " + term + " as a requirement UID or REVIEWED_HASH"
		}
	case ledger.ValidateVersion(term) == nil:
		queries = []ledger.Query{{Release: term, Kind: kind}}
		data.What = "entries of release " + term
		rels, err := p.opts.Registry.Releases(ctx, term)
		if err != nil {
			return err
		}
		if len(rels) > 0 {
			data.Release = term
		}
	default:
		if err := checkUID(term); err != nil {
			return fail("%v", err)
		}
		queries = []ledger.Query{{UID: term, Kind: kind}}
		data.What = "entries for requirement " + term
	}
	idx, err := p.find(ctx, queries, start, searchLimit+1)
	if err != nil {
		return err
	}
	if len(idx) > searchLimit {
		v := r.URL.Query()
		v.Set("start", strconv.FormatUint(idx[searchLimit], 10))
		data.Next = "/search?" + v.Encode()
		idx = idx[:searchLimit]
	}
	for _, i := range idx {
		res, err := p.result(ctx, i)
		if err != nil {
			return err
		}
		data.Results = append(data.Results, res)
	}
	if len(data.Results) == 1 {
		data.What = strings.Replace(data.What, "entries", "entry", 1) // "1 entry of release v0.1.0"
	}
	return p.render(w, http.StatusOK, "search", "Search: "+data.Q, data)
}

// find runs each query and merges the indexes, in log order, without
// repeats.
func (p *Pages) find(ctx context.Context, qs []ledger.Query, start uint64, limit int) ([]uint64, error) {
	var all []uint64
	for _, q := range qs {
		idx, err := p.opts.Log.Search(ctx, q, start, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, idx...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// isReviewedHash reports whether s could be a REVIEWED_HASH: 32 to 128
// hex digits, of either case.
func isReviewedHash(s string) bool {
	_, err := evidence.NormaliseReviewedHash(s)
	return err == nil
}

// checkUID refuses a search term no UID could be.
func checkUID(s string) error {
	if len(s) > 1024 || !utf8.ValidString(s) {
		return fmt.Errorf("a requirement UID is at most 1024 bytes of UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("a requirement UID has no control characters")
		}
	}
	return nil
}

// result reads entry i and says in a few words what it records.
func (p *Pages) result(ctx context.Context, i uint64) (result, error) {
	b, err := p.opts.Log.Entry(ctx, i)
	if err != nil {
		return result{}, err
	}
	e, err := ledger.ParseEntry(b)
	if err != nil {
		return result{}, fmt.Errorf("entry %d: %w", i, err)
	}
	return result{Index: i, Kind: e.Kind, Summary: summary(e), LoggedAt: e.LoggedAt, LoggedBy: e.LoggedBy}, nil
}

// summary says what an entry records, in one line.
func summary(e ledger.Entry) string {
	switch e.Kind {
	case ledger.KindArtefact:
		var s ledger.Artefact
		if e.DecodeSubject(&s) == nil {
			return strings.TrimSpace(s.Name + " " + inRelease(s.Release))
		}
	case ledger.KindBundle:
		var s ledger.Bundle
		if e.DecodeSubject(&s) == nil {
			return fmt.Sprintf("bundle of %d files %s", s.Files, inRelease(s.Release))
		}
	case ledger.KindStamp:
		var s ledger.Stamp
		if e.DecodeSubject(&s) == nil {
			return fmt.Sprintf("%s approved by %s (PR %s, commit %s)", s.UID, s.Approver, s.PR, s.Commit)
		}
	case ledger.KindSigner:
		var s ledger.Signer
		if e.DecodeSubject(&s) == nil {
			if s.Action == ledger.SignerRevoke {
				return fmt.Sprintf("revoked %s: %s", s.KeyID, s.Reason)
			}
			return fmt.Sprintf("enrolled %s <%s> as %s (%s)", s.Name, s.Email, s.Role, s.KeyID)
		}
	case ledger.KindRelease:
		var s ledger.Release
		if e.DecodeSubject(&s) == nil {
			return fmt.Sprintf("release %s, signed %s with meaning %s", s.Version, s.SignedAt, s.Meaning)
		}
	}
	return string(e.Kind)
}

func inRelease(v string) string {
	if v == "" {
		return ""
	}
	return "(release " + v + ")"
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
