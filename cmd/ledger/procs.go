package main

import (
	"os"
	"runtime"
)

// serveProcs is the GOMAXPROCS a node runs with: twice the CPUs it may use
// when Go's default is in force, that is unless the GOMAXPROCS variable sets
// it, a CPU quota lowered it, or it was already raised.
//
// A node's latency is set by two goroutines that do little work each time:
// the sequencer and the handler answering an append. Badger's compactions
// and memtable flushes are long CPU-bound goroutines, and Go preempts a
// running goroutine only every 10 ms; with one scheduler per CPU, a burst of
// compaction can hold every one of them while a commit waits behind it.
// With more schedulers than CPUs the kernel, which switches threads far more
// often, interleaves them. On the project's two-core machine this took the
// p99 of appends over HTTP, on logs growing to 700,000 entries, from 19–91 ms
// (9 runs of 24 over 50 ms) to 15–47 ms, at the same throughput
// (BENCHMARKS.md).
//
// Under a CPU quota (a container's cgroup limit, which Go's default
// GOMAXPROCS already follows) more threads than the quota allows would be
// throttled for the rest of each period, far worse for latency, so the
// default is kept.
func serveProcs(env string, procs, cpus int) int {
	if env != "" || procs != cpus {
		return procs
	}
	return 2 * cpus
}

// raiseProcs applies serveProcs to the running process and returns the
// GOMAXPROCS in force.
func raiseProcs() int {
	procs := runtime.GOMAXPROCS(0)
	if n := serveProcs(os.Getenv("GOMAXPROCS"), procs, runtime.NumCPU()); n != procs {
		runtime.GOMAXPROCS(n)
		return n
	}
	return procs
}
