//go:build race

package node

// raceEnabled reports a test binary built with the race detector, whose
// instrumentation takes several times the memory: peak-memory limits do
// not hold there.
const raceEnabled = true
