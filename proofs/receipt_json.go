package proofs

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the receipt's JSON to b: byte for byte what
// encoding/json writes for it with HTML escaping off, without reflection.
// A node answers every append with a receipt, so this is on its hot path.
func (r Receipt) AppendJSON(b []byte) []byte {
	b = append(b, `{"origin":`...)
	b = AppendJSONString(b, r.Origin, true)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	b = append(b, `,"entry":`...)
	b = appendBytes(b, r.Entry)
	b = append(b, `,"entry_digest":`...)
	b = AppendJSONString(b, r.EntryDigest, true)
	b = append(b, `,"inclusion":{"tree_size":`...)
	b = strconv.AppendUint(b, r.Inclusion.TreeSize, 10)
	b = append(b, `,"hashes":`...)
	if r.Inclusion.Hashes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, h := range r.Inclusion.Hashes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendBytes(b, h)
		}
		b = append(b, ']')
	}
	b = append(b, `},"checkpoint":`...)
	b = AppendJSONString(b, r.Checkpoint, true)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// appendBytes appends b as encoding/json does: null, or standard base64.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// AppendJSONString appends s as a JSON string, in one of two dialects:
// RFC 8785 (JCS, asEncodingJSON false): quotation mark and reverse solidus
// escaped, control characters as \b \t \n \f \r or \u00xx, everything
// else as UTF-8 with an invalid byte as U+FFFD; or what encoding/json
// writes with HTML escaping off (asEncodingJSON true): the same, but
// U+2028 and U+2029 escaped and an invalid byte written as \ufffd.
func AppendJSONString(dst []byte, s string, asEncodingJSON bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1 && asEncodingJSON:
			esc = `\ufffd`
		case r == utf8.RuneError && size == 1:
			esc = "\uFFFD"
		case asEncodingJSON && r == '\u2028':
			esc = `\u2028`
		case asEncodingJSON && r == '\u2029':
			esc = `\u2029`
		default:
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
