package flatjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

type member struct {
	key string
	v   Value
}

// members collects what Members passes on.
func members(b []byte) ([]member, bool) {
	var ms []member
	ok := Members(b, func(k []byte, v Value) bool {
		ms = append(ms, member{string(k), v})
		return true
	})
	return ms, ok
}

// checkAgainstJSON fails if Members accepted b but encoding/json reads it
// differently: not valid, other keys, or other values.
func checkAgainstJSON(t *testing.T, b []byte) {
	t.Helper()
	ms, ok := members(b)
	if !ok {
		return
	}
	if !json.Valid(b) {
		t.Fatalf("Members accepted %q, which is not valid JSON", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("Members accepted %q, which encoding/json starts with %v, %v", b, tok, err)
	}
	i := 0
	for ; dec.More(); i++ {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if i >= len(ms) {
			t.Fatalf("Members(%q) passed on %d members, encoding/json sees more", b, len(ms))
		}
		m := ms[i]
		if tok != m.key {
			t.Fatalf("Members(%q) member %d key = %q, encoding/json reads %q", b, i, m.key, tok)
		}
		switch m.v.Kind {
		case String:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil || s != string(m.v.Raw) {
				t.Fatalf("Members(%q) member %q = string %q, encoding/json reads %s as %q (%v)", b, m.key, m.v.Raw, raw, s, err)
			}
		case Int:
			var n json.Number
			if err := json.Unmarshal(raw, &n); err != nil || string(n) != string(m.v.Raw) || strings.ContainsAny(string(n), ".eE") {
				t.Fatalf("Members(%q) member %q = integer %q, encoding/json reads %s as %v (%v)", b, m.key, m.v.Raw, raw, n, err)
			}
		case Object:
			var o map[string]any
			if err := json.Unmarshal(raw, &o); err != nil || !bytes.Equal(raw, m.v.Raw) {
				t.Fatalf("Members(%q) member %q = object %q, encoding/json reads %s (%v)", b, m.key, m.v.Raw, raw, err)
			}
		default:
			t.Fatalf("Members(%q) member %q has kind %d", b, m.key, m.v.Kind)
		}
	}
	if i != len(ms) {
		t.Fatalf("Members(%q) passed on %d members, encoding/json sees %d", b, len(ms), i)
	}
}

func TestMembers(t *testing.T) {
	tests := []struct {
		in   string
		want []member // nil: declined
	}{
		{`{}`, []member{}},
		{" \t\r\n{ } \n", []member{}},
		{`{"a":"b"}`, []member{{"a", Value{String, []byte("b")}}}},
		{`{"a":"é😀","b":-12,"c":0,"d":{"e":{"f":"g"},"h":1}}`, []member{
			{"a", Value{String, []byte("é😀")}}, {"b", Value{Int, []byte("-12")}}, {"c", Value{Int, []byte("0")}},
			{"d", Value{Object, []byte(`{"e":{"f":"g"},"h":1}`)}}}},
		{`{ "a" : "" , "" : 7 }`, []member{{"a", Value{String, []byte("")}}, {"", Value{Int, []byte("7")}}}},
		{`{"a":"b"}{}`, nil},
		{`{"a":"b"} x`, nil},
		{`{"a":"b",}`, nil},
		{`{"a":"b""c":1}`, nil},
		{`{"a" "b"}`, nil},
		{`{"a":}`, nil},
		{`{"a":"b"`, nil},
		{`{"a\"":"b"}`, nil},
		{`{"a":"\n"}`, nil},
		{"{\"a\":\"\n\"}", nil},
		{"{\"a\":\"\xff\"}", nil},
		{"{\"\xc3\":1}", nil},
		{`{"a":01}`, nil},
		{`{"a":1.5}`, nil},
		{`{"a":1e3}`, nil},
		{`{"a":-}`, nil},
		{`{"a":null}`, nil},
		{`{"a":true}`, nil},
		{`{"a":[]}`, nil},
		{`{"a":{"b":[1]}}`, nil},
		{`{"a":{"b":"c",}}`, nil},
		{`[]`, nil},
		{`"a"`, nil},
		{``, nil},
		{"\ufeff{}", nil},
		{strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), nil},
	}
	for _, tt := range tests {
		got, ok := members([]byte(tt.in))
		if tt.want == nil {
			if ok {
				t.Errorf("Members(%q) = %v, true; want false", tt.in, got)
			}
			continue
		}
		if !ok || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Members(%q) = %v, %v; want %v, true", tt.in, got, ok, tt.want)
		}
		checkAgainstJSON(t, []byte(tt.in))
	}
}

// TestMembersStops checks that fn's false stops the scan and is reported.
func TestMembersStops(t *testing.T) {
	n := 0
	ok := Members([]byte(`{"a":1,"b":2,"c":3}`), func(k []byte, v Value) bool {
		n++
		return string(k) != "b"
	})
	if ok || n != 2 {
		t.Errorf("Members with fn false at b = %v after %d calls, want false after 2", ok, n)
	}
}

// randomObject writes a random object, mostly in the handled subset, with
// pieces of other JSON and of malformed JSON mixed in.
func randomObject(r *rand.Rand, sb *strings.Builder, depth int) {
	pieces := []string{"", "a", "kind", "subject", " ", "\t", "\n", "é", "😀", "\u2028", "\ufffd", "\x7f", "\\", "\\n", "\\u0041", "\"", "\x00", "\x1f", "\xff", "\xc3", "\xed\xa0\x80"}
	ws := func() {
		if r.IntN(4) == 0 {
			sb.WriteString([]string{" ", "\t", "\r\n", "  \n "}[r.IntN(4)])
		}
	}
	str := func() {
		sb.WriteByte('"')
		for range r.IntN(4) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		sb.WriteByte('"')
	}
	sb.WriteByte('{')
	for i := range r.IntN(5) {
		if i > 0 {
			ws()
			sb.WriteByte(',')
		}
		ws()
		str()
		ws()
		sb.WriteByte(':')
		ws()
		switch r.IntN(12) {
		case 0, 1, 2, 3:
			str()
		case 4, 5:
			sb.WriteString([]string{"0", "-0", "7", "-12", "9223372036854775807", "9223372036854775808", "01", "1.5", "1e3", "-", "00"}[r.IntN(11)])
		case 6, 7:
			if depth < 3 {
				randomObject(r, sb, depth+1)
			} else {
				sb.WriteString("{}")
			}
		default:
			sb.WriteString([]string{"null", "true", "false", "[]", "[1]", `"`, "}", ",", ""}[r.IntN(9)])
		}
		ws()
	}
	if r.IntN(20) == 0 {
		sb.WriteByte(',')
	}
	sb.WriteByte('}')
}

// TestMembersRandom compares Members with encoding/json on many random
// objects, and checks that it accepts a good share of them.
func TestMembersRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	accepted := 0
	for range 20000 {
		var sb strings.Builder
		randomObject(r, &sb, 0)
		if r.IntN(10) == 0 {
			sb.WriteString([]string{" ", "{}", "x", "}", "\n"}[r.IntN(5)])
		}
		b := []byte(sb.String())
		if _, ok := members(b); ok {
			accepted++
		}
		checkAgainstJSON(t, b)
	}
	if accepted < 1000 {
		t.Errorf("Members accepted %d of 20000 random objects; the test no longer exercises it", accepted)
	}
}

// FuzzMembers checks that whatever Members accepts, encoding/json reads
// as the same object.
func FuzzMembers(f *testing.F) {
	f.Add([]byte(`{"kind":"artefact","subject":{"digest":"sha256:00","size":1,"name":"a","media_type":"text/plain"}}`))
	f.Add([]byte(`{"a":-0,"b":{"c":{}}, "d" : "é" }`))
	f.Add([]byte(`{"a":"\u0041"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstJSON(t, b)
	})
}
