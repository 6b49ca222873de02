package strictjson

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type outer struct {
		Kind string         `json:"kind"`
		Sub  inner          `json:"sub"`
		List []inner        `json:"list"`
		Any  map[string]any `json:"any"`
	}
	for _, c := range []struct {
		in, err string
	}{
		{`{"kind":"x","sub":{"a":"y"}}`, ""},
		{`{"kind":"x","list":[{"a":"1"},{"a":"1"}],"any":{"a":[1,{"b":2}],"b":{"a":1}}}`, ""},
		{` {"kind" : "x"} `, ""},
		{`{"kind":"x","kind":"y"}`, `"kind" appears twice`},
		{`{"sub":{"a":"1","a":"2"}}`, `"a" appears twice`},
		{`{"list":[{"a":"1","a":"2"}]}`, `"a" appears twice`},
		{`{"any":{"x":[1,2],"y":{},"x":3}}`, `"x" appears twice`},
		{`{"kind":"a` + "\xff" + `"}`, "not valid UTF-8"},
		{`{"kind":"x","other":1}`, "unknown field"},
		{`{"kind":"x"} {}`, "data after"},
		{`{"kind":`, "unexpected EOF"},
		{`{"kind":"x","Kind":"y"}`, `"Kind" appears twice`},
	} {
		var v outer
		err := Decode([]byte(c.in), &v)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("Decode(%s) = %v, want no error", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Decode(%s) = %v, want an error containing %q", c.in, err, c.err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[{"c":1,"d":2}],"e":"f"}}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`[{"a":1},{"a":1}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		// What Check accepts and encoding/json decodes into a generic
		// value keeps every member: none was dropped by last-one-wins.
		// In valid JSON each member has the only colon outside strings.
		var v any
		if err := Decode(b, &v); err != nil {
			return
		}
		if got, want := countMembers(v), colons(b); got != want {
			t.Fatalf("%q: %d members decoded, %d in the text", b, got, want)
		}
	})
}

func countMembers(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			n += 1 + countMembers(x)
		}
	case []any:
		for _, x := range v {
			n += countMembers(x)
		}
	}
	return n
}

// colons counts the colons of b outside JSON strings.
func colons(b []byte) int {
	n, in, esc := 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && c == ':':
			n++
		}
	}
	return n
}
