package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestProgressItems draws a count of items with a total and one without
// (as migrate's proof counts checkpoints): no "/0" for the unknown total.
func TestProgressItems(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, on: true}
	p.set("checkpoints", 7168, 0)
	p.done()
	if got := buf.String(); !strings.Contains(got, "7168") || strings.Contains(got, "7168/0") {
		t.Errorf("progress of 7168 items of no known total drew %q, want 7168 alone", got)
	}
	buf.Reset()
	p = &progress{w: &buf, on: true}
	p.set("blobs", 5, 20)
	p.done()
	if got := buf.String(); !strings.Contains(got, " 25% 5/20") {
		t.Errorf("progress of 5 of 20 items drew %q, want 25%% 5/20", got)
	}
}

// TestProgressOffWithoutTerminal checks that a progress writing anywhere
// but a terminal draws nothing, as on CI.
func TestProgressOffWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "log", 10)
	p.set("log", 5, 10)
	p.done()
	if buf.Len() != 0 {
		t.Errorf("progress to a buffer drew %q, want nothing", buf.String())
	}
}
