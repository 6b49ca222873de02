// Package flatjson reads the plain JSON objects of append requests
// without encoding/json's reflection and buffering, for the node's hot
// path. It handles only a subset of JSON (RFC 8259): objects whose member
// values are strings without escapes, integers, or such objects again.
// Anything else, valid JSON or not, it declines, and the caller decodes
// with encoding/json as before, which then also gives the error: so the
// fast path changes no result and no message, only the cost.
//
// Within that subset a string's bytes are exactly what encoding/json
// decodes it to: no escapes to undo, no control characters, and only
// valid UTF-8 (which encoding/json would otherwise replace with U+FFFD).
package flatjson

import "unicode/utf8"

// Kind is the kind of a member's value.
type Kind uint8

// The kinds of value Members passes on.
const (
	String Kind = iota + 1 // Raw is the text between the quotes
	Int                    // Raw is -?(0|[1-9][0-9]*): no fraction or exponent
	Object                 // Raw is the whole object, braces included
)

// Value is one member's value, as it appears in the input.
type Value struct {
	Kind Kind
	Raw  []byte
}

// maxDepth bounds the nesting of objects the fast path follows; deeper
// ones are left to encoding/json.
const maxDepth = 32

// Members calls fn with the key and value of each member of the JSON
// object b holds (with nothing around it but JSON white space), in order,
// and reports true if it read all of b. It reports false as soon as b
// leaves the subset the package handles, or fn returns false; fn may by
// then have seen some of the members. Keys are the text between their
// quotes, under the same rules as string values. Raw slices alias b.
func Members(b []byte, fn func(key []byte, v Value) bool) bool {
	i := skipSpace(b, 0)
	end, ok := object(b, i, 0, fn)
	return ok && skipSpace(b, end) == len(b)
}

// object reads the object starting at b[i], calling fn (if not nil) with
// its members, and returns the offset just past its closing brace.
func object(b []byte, i, depth int, fn func(key []byte, v Value) bool) (int, bool) {
	if depth >= maxDepth || i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		ks, ke, ok := str(b, i)
		if !ok {
			return 0, false
		}
		i = skipSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		var v Value
		if i, v, ok = value(b, i, depth); !ok {
			return 0, false
		}
		if fn != nil && !fn(b[ks:ke], v) {
			return 0, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return 0, false
		}
	}
}

// value reads the value starting at b[i] and returns the offset just past
// it.
func value(b []byte, i, depth int) (int, Value, bool) {
	if i >= len(b) {
		return 0, Value{}, false
	}
	switch c := b[i]; {
	case c == '"':
		if s, e, ok := str(b, i); ok {
			return e + 1, Value{String, b[s:e]}, true
		}
	case c == '{':
		if e, ok := object(b, i, depth+1, nil); ok {
			return e, Value{Object, b[i:e]}, true
		}
	case c == '-' || '0' <= c && c <= '9':
		e := i
		if c == '-' {
			e++
		}
		switch {
		case e < len(b) && b[e] == '0':
			e++
		case e < len(b) && '1' <= b[e] && b[e] <= '9':
			for e < len(b) && '0' <= b[e] && b[e] <= '9' {
				e++
			}
		default:
			return 0, Value{}, false
		}
		// A fraction or an exponent makes another kind of number; a digit
		// after a leading zero is not JSON. The caller then finds no
		// separator and declines.
		return e, Value{Int, b[i:e]}, true
	}
	return 0, Value{}, false
}

// str reads the string whose opening quote is b[i] and returns the offsets
// of its first byte and of its closing quote.
func str(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	start = i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:j]) {
				return 0, 0, false
			}
			return start, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, 0, false
}

// skipSpace returns the offset of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
