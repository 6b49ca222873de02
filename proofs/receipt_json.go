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
	b = appendString(b, r.Origin)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	b = append(b, `,"entry":`...)
	b = appendBytes(b, r.Entry)
	b = append(b, `,"entry_digest":`...)
	b = appendString(b, r.EntryDigest)
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
	b = appendString(b, r.Checkpoint)
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

// appendString appends s as a JSON string the way encoding/json does
// with HTML escaping off: \" \\ \b \f \n \r \t, other control characters
// as \u00XX, U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd.
func appendString(dst []byte, s string) []byte {
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
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
