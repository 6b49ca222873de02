//go:build !race

package node

// raceEnabled reports a test binary built with the race detector.
const raceEnabled = false
