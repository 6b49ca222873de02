package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// This file reads StrictDoc documents (.sdoc), the SDoc grammar of
// https://github.com/strictdoc-project/strictdoc, far enough to find every
// node's UID and REVIEWED_HASH. It checks the structure of a file (markers,
// fields, multi-line values, nesting) but not a document's [GRAMMAR]: it
// does not check which fields a node type allows, their order or choices,
// nor resolve RELATIONS.
//
// The SDoc it accepts, line by line (a line ends in LF or CRLF):
//
//	[DOCUMENT]               first marker of the file; its fields include TITLE
//	[GRAMMAR]                optional, right after the document fields
//	[TYPE]                   a node: REQUIREMENT, TEXT, or a custom type
//	[[TYPE]] ... [[/TYPE]]   a composite node, [[SECTION]] included
//	[SECTION] ... [/SECTION] the older section syntax
//	[COMPOSITE_TYPE] ... [/COMPOSITE_TYPE]
//	                         the older composite syntax (node type TYPE)
//	[FREETEXT] ... [/FREETEXT]
//	                         the older free text, skipped
//	NAME: value              a one-line field
//	NAME: >>>                a multi-line field, up to a line holding <<<
//	NAME:                    a field of indented or "- " lines (RELATIONS,
//	                         OPTIONS, METADATA, VIEWS, ELEMENTS)
//
// A node's fields follow its marker with no blank line between them; a
// blank line ends them. SDoc has no comment syntax: comments are COMMENT
// fields, the one field a node may repeat.

// MaxSDocSize bounds the .sdoc files ParseSDoc reads.
const MaxSDocSize = 16 << 20

// SDocNode is one node of a StrictDoc document that has a UID: a
// requirement or any other node type.
type SDocNode struct {
	Type         string            // "REQUIREMENT", "TEXT", or a custom node type
	UID          string            // the UID field
	ReviewedHash string            // the REVIEWED_HASH field, "" if none
	Title        string            // the TITLE field, "" if none
	Fields       map[string]string // every field, multi-line values joined with "\n"
	Line         int               // 1-based line of the node's [TYPE] marker
}

// ContentHash is the REVIEWED_HASH the node's content calls for: the
// lower-case hex SHA-256 of "UID: <uid>\nTITLE: <title>\nSTATEMENT:
// <statement>\n", the convention a traceability matrix states (see
// testdata/sdoc/README.md), with the values as ParseSDoc gives them.
func (n SDocNode) ContentHash() string {
	sum := sha256.Sum256([]byte("UID: " + n.UID + "\nTITLE: " + n.Title + "\nSTATEMENT: " + n.Fields["STATEMENT"] + "\n"))
	return hex.EncodeToString(sum[:])
}

// SDocDocument is a parsed .sdoc file.
type SDocDocument struct {
	Title string     // the document's TITLE
	Nodes []SDocNode // nodes with a UID, in file order
}

// ErrInvalidSDoc is wrapped by every ParseSDoc error.
var ErrInvalidSDoc = errors.New("invalid sdoc")

// ParseSDoc parses the content of an .sdoc file; name is used in errors,
// which read "<name>:<line>: <what is wrong>".
//
// Nodes of every type are returned when they have a UID, sections and
// composite nodes included (Type "SECTION", or the composite's type). Single
// line values are trimmed of surrounding blanks; multi-line values are kept
// as written, without the >>> and <<< lines; a repeated COMMENT field is
// joined with "\n"; an indented field (RELATIONS and the like) is its lines
// joined with "\n". Fields holds every field as written, REVIEWED_HASH
// included; ReviewedHash is that field in lower case.
//
// It rejects input over MaxSDocSize ("<name>: ...", with no line) and,
// naming the line: input that is not UTF-8; a file that does not start
// with [DOCUMENT] or whose document has no TITLE; a marker that is not one of the forms above; a field line outside a node or
// one that is not "NAME: value"; a multi-line field or [FREETEXT] not
// closed; a section or composite node not closed, or closed by the wrong
// marker; a node with no fields; a field other than COMMENT given twice in
// one node; a UID with characters StrictDoc does not allow, or given twice
// in the document; a REVIEWED_HASH that is not 32 to 128 hex digits (see
// NormaliseReviewedHash), or on a node with no UID.
//
// It takes time linear in len(b) and allocates the nodes' fields.
func ParseSDoc(name string, b []byte) (SDocDocument, error) {
	if len(b) > MaxSDocSize {
		return SDocDocument{}, &sdocError{name: name, msg: fmt.Sprintf("%d bytes is more than the %d MiB an .sdoc may have", len(b), MaxSDocSize>>20)}
	}
	if !utf8.Valid(b) {
		line, col := 1, 1
		for i := 0; i < len(b); {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return SDocDocument{}, &sdocError{name: name, line: line, msg: fmt.Sprintf("not UTF-8: byte 0x%02x at column %d; save the file as UTF-8", b[i], col)}
			}
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i += size
		}
	}
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	p := sdocParser{name: name, uids: map[string]int{}, names: map[string]string{}}
	n := 0
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		n++
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if err := p.readLine(n, line); err != nil {
			return SDocDocument{}, err
		}
	}
	if err := p.finish(); err != nil {
		return SDocDocument{}, err
	}
	return p.doc, nil
}

// sdocError is a ParseSDoc error: "<name>:<line>: <msg>", or "<name>: <msg>"
// when no line applies.
type sdocError struct {
	name string
	line int
	msg  string
}

func (e *sdocError) Error() string {
	if e.line == 0 {
		return e.name + ": " + e.msg
	}
	return fmt.Sprintf("%s:%d: %s", e.name, e.line, e.msg)
}

func (e *sdocError) Unwrap() error { return ErrInvalidSDoc }

type sdocBlockKind int

const (
	sdocNone     sdocBlockKind = iota
	sdocDocument               // the [DOCUMENT] fields
	sdocGrammar                // the [GRAMMAR] fields, checked for form and dropped
	sdocNode                   // a node's fields
)

// sdocOpen is a section or composite node waiting for its closing marker.
type sdocOpen struct {
	name   string // SECTION, COMPOSITE_REQUIREMENT (older syntax), REQUIREMENT...
	modern bool   // [[name]] rather than [name]
	line   int
}

func (o sdocOpen) opener() string {
	if o.modern {
		return "[[" + o.name + "]]"
	}
	return "[" + o.name + "]"
}

func (o sdocOpen) closer() string {
	if o.modern {
		return "[[/" + o.name + "]]"
	}
	return "[/" + o.name + "]"
}

type sdocFieldPos struct {
	name string
	line int
}

// sdocPending is a field whose value spans several lines.
type sdocPending struct {
	name  string
	line  int
	multi bool // >>> ... <<<, else indented lines
	lines int
	buf   []byte
}

type sdocParser struct {
	name string
	doc  SDocDocument

	docLine     int // line of [DOCUMENT], 0 before it
	grammarLine int // line of [GRAMMAR], 0 if none
	nodeSeen    bool
	freetext    int // line of the open [FREETEXT], 0 when none
	stack       []sdocOpen
	uids        map[string]int    // UID to the line of its node
	names       map[string]string // interned field names

	// The block whose fields are being read.
	kind     sdocBlockKind
	typ      string
	mark     []byte // its marker line, as written
	line     int
	fields   map[string]string // for nodes
	seen     []sdocFieldPos    // fields of the block so far
	hashLine int
	hash     string // normalised REVIEWED_HASH
	spare    map[string]string

	pending sdocPending // valid when pending.name != ""
}

func (p *sdocParser) errorf(line int, format string, args ...any) error {
	return &sdocError{name: p.name, line: line, msg: fmt.Sprintf(format, args...)}
}

func (p *sdocParser) readLine(n int, l []byte) error {
	if f := &p.pending; f.name != "" {
		if f.multi {
			if string(trimBlanksRight(l)) == "<<<" {
				return p.endPending()
			}
			if f.lines > 0 {
				f.buf = append(f.buf, '\n')
			}
			f.buf = append(f.buf, l...)
			f.lines++
			return nil
		}
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t' || l[0] == '-') && len(trimBlanksRight(l)) > 0 {
			if f.lines > 0 {
				f.buf = append(f.buf, '\n')
			}
			f.buf = append(f.buf, l...)
			f.lines++
			return nil
		}
		if err := p.endPending(); err != nil {
			return err
		}
	}
	t := trimBlanksRight(l)
	if p.freetext > 0 {
		if string(t) == "[/FREETEXT]" {
			p.freetext = 0
		}
		return nil
	}
	if len(t) == 0 {
		return p.endBlock()
	}
	if t[0] == '[' {
		return p.marker(n, t)
	}
	return p.field(n, l)
}

// marker handles a line starting with "[", trailing blanks removed.
func (p *sdocParser) marker(n int, t []byte) error {
	var name []byte
	modern, closing := false, false
	switch {
	case len(t) > 4 && bytes.HasPrefix(t, []byte("[[")) && bytes.HasSuffix(t, []byte("]]")):
		name, modern = t[2:len(t)-2], true
	case len(t) > 2 && t[len(t)-1] == ']':
		name = t[1 : len(t)-1]
	}
	if len(name) > 0 && name[0] == '/' {
		name, closing = name[1:], true
	}
	if !validSDocNodeType(name) {
		return p.errorf(n, "malformed line %s: want a node marker such as [REQUIREMENT], [[SECTION]] or [[/SECTION]], or a field \"NAME: value\"", quoteLine(t))
	}
	if err := p.endBlock(); err != nil {
		return err
	}
	typ := string(name)
	if p.docLine == 0 {
		if typ != "DOCUMENT" || modern || closing {
			return p.errorf(n, "found %s before [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE", t)
		}
		p.docLine = n
		p.begin(sdocDocument, typ, t, n)
		return nil
	}
	if closing {
		return p.close(n, sdocOpen{name: typ, modern: modern, line: n})
	}
	if modern {
		switch typ {
		case "DOCUMENT", "GRAMMAR", "FREETEXT":
			return p.errorf(n, "%s cannot be a composite node: want [%s]", t, typ)
		}
		p.stack = append(p.stack, sdocOpen{name: typ, modern: true, line: n})
		p.nodeSeen = true
		p.begin(sdocNode, typ, t, n)
		return nil
	}
	switch {
	case typ == "DOCUMENT":
		return p.errorf(n, "a second [DOCUMENT] (the first is at line %d): one .sdoc file holds one document", p.docLine)
	case typ == "GRAMMAR":
		if p.grammarLine > 0 {
			return p.errorf(n, "a second [GRAMMAR] (the first is at line %d)", p.grammarLine)
		}
		if p.nodeSeen {
			return p.errorf(n, "[GRAMMAR] after the first node: it belongs right after the [DOCUMENT] fields")
		}
		p.grammarLine = n
		p.begin(sdocGrammar, typ, t, n)
	case typ == "FREETEXT":
		p.freetext = n
	case typ == "SECTION":
		p.stack = append(p.stack, sdocOpen{name: typ, line: n})
		p.nodeSeen = true
		p.begin(sdocNode, typ, t, n)
	case len(typ) > len("COMPOSITE_") && typ[:len("COMPOSITE_")] == "COMPOSITE_":
		p.stack = append(p.stack, sdocOpen{name: typ, line: n})
		p.nodeSeen = true
		p.begin(sdocNode, typ[len("COMPOSITE_"):], t, n)
	default:
		p.nodeSeen = true
		p.begin(sdocNode, typ, t, n)
	}
	return nil
}

// close handles a closing marker c.
func (p *sdocParser) close(n int, c sdocOpen) error {
	if len(p.stack) == 0 {
		if !c.modern && c.name == "FREETEXT" {
			return p.errorf(n, "[/FREETEXT] without a [FREETEXT] before it")
		}
		return p.errorf(n, "%s closes nothing: no %s is open", c.closer(), c.opener())
	}
	top := p.stack[len(p.stack)-1]
	if top.name != c.name || top.modern != c.modern {
		return p.errorf(n, "%s found where %s (opened at line %d) must be closed by %s", c.closer(), top.opener(), top.line, top.closer())
	}
	p.stack = p.stack[:len(p.stack)-1]
	return nil
}

// field handles a line that is neither blank nor a marker.
func (p *sdocParser) field(n int, l []byte) error {
	i := 0
	if len(l) > 0 && 'A' <= l[0] && l[0] <= 'Z' {
		for i = 1; i < len(l) && isSDocFieldNameByte(l[i]); i++ {
		}
	}
	ok := i > 0 && i < len(l) && l[i] == ':' && (i+1 == len(l) || l[i+1] == ' ' || l[i+1] == '\t')
	if p.kind == sdocNone {
		if p.docLine == 0 {
			return p.errorf(n, "found %s before [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE", quoteLine(l))
		}
		if ok {
			return p.errorf(n, "field %s is outside any node: a node's fields follow its [TYPE] line with no blank line between them", l[:i])
		}
		return p.errorf(n, "text outside any node: %s; free text goes in a [TEXT] node's STATEMENT: >>> ... <<<", quoteLine(l))
	}
	if !ok {
		return p.errorf(n, "malformed field line %s in %s: want \"NAME: value\" or \"NAME: >>>\" with NAME in capitals at the start of the line", quoteLine(l), p.markerName())
	}
	name := p.intern(l[:i])
	if err := p.startField(n, name); err != nil {
		return err
	}
	v := trimBlanks(l[i+1:])
	switch {
	case len(v) == 0, string(v) == ">>>":
		if name == "UID" || name == "REVIEWED_HASH" {
			if len(v) == 0 {
				return p.errorf(n, "field %s has no value", name)
			}
			return p.errorf(n, "%s must be a one-line field: want \"%s: value\"", name, name)
		}
		p.pending = sdocPending{name: name, line: n, multi: len(v) > 0, buf: p.pending.buf[:0]}
		return nil
	}
	return p.setField(n, name, string(v))
}

// endPending stores the multi-line or indented field being read.
func (p *sdocParser) endPending() error {
	f := p.pending
	p.pending.name = ""
	if !f.multi && f.lines == 0 {
		return p.errorf(f.line, "field %s has no value: want \"%s: value\", \"%s: >>>\" or indented lines after it", f.name, f.name, f.name)
	}
	return p.setField(f.line, f.name, string(f.buf))
}

// startField checks that field name, at line n, is not a repeat.
func (p *sdocParser) startField(n int, name string) error {
	for _, s := range p.seen {
		if s.name == name && name != "COMMENT" {
			return p.errorf(n, "field %s given twice in %s (first at line %d)", name, p.markerName(), s.line)
		}
	}
	p.seen = append(p.seen, sdocFieldPos{name, n})
	return nil
}

func (p *sdocParser) setField(n int, name, v string) error {
	switch p.kind {
	case sdocDocument:
		switch name {
		case "TITLE":
			p.doc.Title = v
		case "REVIEWED_HASH":
			// A document is not a node: a stamp here would name no UID
			// and vanish. Say so rather than drop it.
			return p.errorf(n, "REVIEWED_HASH on the [DOCUMENT] itself: stamps belong to nodes with a UID; move it into the node it approves")
		}
		return nil
	case sdocGrammar:
		return nil
	}
	switch name {
	case "UID":
		if !validSDocUID(v) {
			return p.errorf(n, "UID %s has characters StrictDoc does not allow: want a letter, digit or _ first, then letters, digits, spaces and _ - . / : ( )", quoteLine([]byte(v)))
		}
	case "REVIEWED_HASH":
		h, err := NormaliseReviewedHash(v)
		if err != nil {
			return p.errorf(n, "REVIEWED_HASH %s is not a hash: want 32 to 128 hex digits, an even number of them (a SHA-256 is 64)", quoteLine([]byte(v)))
		}
		p.hash, p.hashLine = h, n
	case "COMMENT":
		if c, ok := p.fields[name]; ok {
			v = c + "\n" + v
		}
	}
	p.fields[name] = v
	return nil
}

// begin starts reading the fields of a block.
func (p *sdocParser) begin(kind sdocBlockKind, typ string, mark []byte, n int) {
	p.kind, p.typ, p.mark, p.line = kind, typ, mark, n
	p.seen = p.seen[:0]
	p.hash, p.hashLine = "", 0
	if kind == sdocNode {
		if p.spare != nil {
			p.fields, p.spare = p.spare, nil
		} else {
			p.fields = make(map[string]string, 8)
		}
	}
}

// endBlock ends the fields of the current block, if any.
func (p *sdocParser) endBlock() error {
	kind := p.kind
	p.kind = sdocNone
	switch kind {
	case sdocDocument:
		if p.doc.Title == "" {
			return p.errorf(p.line, "[DOCUMENT] has no TITLE field: want \"TITLE: ...\" among the lines right after it")
		}
	case sdocNode:
		if len(p.seen) == 0 {
			return p.errorf(p.line, "%s has no fields: want at least one \"NAME: value\" line right after it", p.markerName())
		}
		uid, ok := p.fields["UID"]
		if !ok {
			if p.hashLine > 0 {
				return p.errorf(p.hashLine, "REVIEWED_HASH on a %s with no UID: a stamp must name its node; add a UID field", p.typ)
			}
			clear(p.fields)
			p.spare = p.fields
			return nil
		}
		if first, ok := p.uids[uid]; ok {
			return p.errorf(p.line, "UID %s is already the UID of the node at line %d: UIDs must be unique", uid, first)
		}
		p.uids[uid] = p.line
		p.doc.Nodes = append(p.doc.Nodes, SDocNode{
			Type:         p.typ,
			UID:          uid,
			ReviewedHash: p.hash,
			Title:        p.fields["TITLE"],
			Fields:       p.fields,
			Line:         p.line,
		})
	}
	p.fields = nil
	return nil
}

func (p *sdocParser) finish() error {
	if f := p.pending; f.name != "" {
		if f.multi {
			return p.errorf(f.line, "multi-line field %s is never closed: want a line holding only <<<", f.name)
		}
		if err := p.endPending(); err != nil {
			return err
		}
	}
	if p.freetext > 0 {
		return p.errorf(p.freetext, "[FREETEXT] is never closed: want [/FREETEXT]")
	}
	if err := p.endBlock(); err != nil {
		return err
	}
	if p.docLine == 0 {
		return p.errorf(1, "no [DOCUMENT]: an .sdoc file starts with [DOCUMENT] and the document's TITLE")
	}
	if len(p.stack) > 0 {
		o := p.stack[len(p.stack)-1]
		return p.errorf(o.line, "%s is never closed: want %s", o.opener(), o.closer())
	}
	return nil
}

// markerName names the current block for errors: "the [REQUIREMENT] at
// line 7".
func (p *sdocParser) markerName() string {
	return fmt.Sprintf("the %s at line %d", p.mark, p.line)
}

func (p *sdocParser) intern(b []byte) string {
	if s, ok := p.names[string(b)]; ok {
		return s
	}
	s := string(b)
	p.names[s] = s
	return s
}

// validSDocNodeType reports whether b is a node type name: capitals and
// digits in words joined by single underscores, like REQUIREMENT or
// RISK_CONTROL.
func validSDocNodeType(b []byte) bool {
	if len(b) == 0 || b[0] < 'A' || b[0] > 'Z' || b[len(b)-1] == '_' {
		return false
	}
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_' && b[i-1] != '_':
		default:
			return false
		}
	}
	return true
}

func isSDocFieldNameByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// validSDocUID reports whether s is a UID as StrictDoc allows them: a
// letter, digit or underscore, then letters, digits, underscores, spaces
// and - / . : ( ).
func validSDocUID(s string) bool {
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
		case i > 0 && (r == ' ' || r == '-' || r == '/' || r == '.' || r == ':' || r == '(' || r == ')'):
		default:
			return false
		}
	}
	return s != ""
}

func trimBlanksRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func trimBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return trimBlanksRight(b)
}

// quoteLine quotes a line for an error, cut to 60 bytes.
func quoteLine(b []byte) string {
	if len(b) > 60 {
		cut := 60
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", b[:cut])
	}
	return fmt.Sprintf("%q", b)
}
