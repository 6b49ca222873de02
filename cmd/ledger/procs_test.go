package main

import "testing"

func TestServeProcs(t *testing.T) {
	for _, c := range []struct {
		env         string
		procs, cpus int
		want        int
	}{
		{"", 2, 2, 4},    // no quota: twice the CPUs
		{"", 16, 16, 32}, // the same on a larger machine
		{"3", 3, 2, 3},   // GOMAXPROCS set by the operator: kept
		{"1", 1, 2, 1},
		{"", 2, 8, 2}, // a quota of two CPUs on an 8-CPU host: kept
		{"", 4, 2, 4}, // already raised (serve run twice in one process): kept
	} {
		if got := serveProcs(c.env, c.procs, c.cpus); got != c.want {
			t.Errorf("serveProcs(%q, %d, %d) = %d, want %d", c.env, c.procs, c.cpus, got, c.want)
		}
	}
}
