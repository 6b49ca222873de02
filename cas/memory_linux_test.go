package cas_test

import (
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
)

// The store's promise of constant memory is checked on Linux, where the store pages out the
// value log it has mapped (see pageout_linux.go).
//
// The peak is VmHWM, the high-water mark of the process's own memory, which starts afresh at
// exec. Not ru_maxrss: Linux carries into it, at exec, the peak of the memory the process had
// before, which for a child of a Go program is its parent's (os/exec starts children with
// CLONE_VM), so a child of a test binary that has used 300 MB reports at least 300 MB.

// largeBlobEnv, set to a size in bytes, makes TestLargeBlobChild put and get a blob of that size.
const largeBlobEnv = "CAS_LARGE_BLOB_CHILD"

// maxRSS is the most resident memory a put and get of a large blob may take, whatever its size.
const maxRSS = 150e6

// TestLargeBlobMemory runs TestLargeBlobChild in a child process of its own, which puts and
// gets a blob of 512 MiB, or CAS_LARGE_BLOB_GB GiB, generated as it streams, through a badger
// store, and fails if its peak resident set reaches 150 MB.
func TestLargeBlobMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 512 MiB through a store; skipped with -short")
	}
	size := int64(512 << 20)
	if env := os.Getenv("CAS_LARGE_BLOB_GB"); env != "" {
		gib, err := strconv.ParseFloat(env, 64)
		if err != nil || gib <= 0 {
			t.Fatalf("CAS_LARGE_BLOB_GB=%q: want a positive number of GiB", env)
		}
		size = int64(gib * (1 << 30))
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLargeBlobChild$", "-test.count=1", "-test.v", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), largeBlobEnv+"="+strconv.FormatInt(size, 10))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestLargeBlobChild") {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	t.Logf("child process:\n%s", out)
}

// TestLargeBlobChild is the child process of TestLargeBlobMemory.
func TestLargeBlobChild(t *testing.T) {
	env := os.Getenv(largeBlobEnv)
	if env == "" {
		t.Skip("runs only as the child of TestLargeBlobMemory")
	}
	size, err := strconv.ParseInt(env, 10, 64)
	if err != nil || size <= 0 {
		t.Fatalf("%s=%q: want a positive number of bytes", largeBlobEnv, env)
	}
	s, _ := newBadger(t, 0)

	start := time.Now()
	info, err := s.Put(t.Context(), newStreamReader(7, size), nil)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	putTime := time.Since(start)
	t.Logf("put %d bytes in %d chunks: %.1fs, %.0f MB/s; %s", info.Size, info.Chunks, putTime.Seconds(), float64(size)/1e6/putTime.Seconds(), memory())
	h := sha256.New()
	if _, err := io.Copy(h, newStreamReader(7, size)); err != nil {
		t.Fatal(err)
	}
	if want := cas.Digest(h.Sum(nil)); info.Digest != want || info.Size != size {
		t.Fatalf("Put = %d bytes with digest %s, want %d bytes with %s", info.Size, info.Digest, size, want)
	}

	start = time.Now()
	g := cas.NewDigester()
	if _, err := cas.Get(t.Context(), s, info.Digest, g); err != nil {
		t.Fatalf("Get: %v", err)
	}
	getTime := time.Since(start)
	if g.Digest() != info.Digest || g.Size() != size {
		t.Fatalf("Get returned %d bytes with digest %s, want %d bytes with %s", g.Size(), g.Digest(), size, info.Digest)
	}
	t.Logf("get: %.1fs, %.0f MB/s; %s", getTime.Seconds(), float64(size)/1e6/getTime.Seconds(), memory())

	peak := peakRSS(t)
	t.Logf("peak RSS (VmHWM) %.1f MB for a blob of %d bytes", float64(peak)/1e6, size)
	switch {
	case peak < maxRSS:
	case raceEnabled:
		t.Logf("not held to %.0f MB: the race detector's instrumentation takes several times the memory", maxRSS/1e6)
	default:
		t.Errorf("peak RSS %.1f MB, want < %.0f MB", float64(peak)/1e6, maxRSS/1e6)
	}
}

// peakRSS returns the process's peak resident memory in bytes: VmHWM in /proc/self/status.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb * 1024
				}
			}
		}
	}
	t.Fatalf("no VmHWM in kB in /proc/self/status:\n%s", b)
	return 0
}

// memory describes the process's current and peak resident memory from /proc.
func memory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var parts []string
	for line := range strings.Lines(string(b)) {
		for _, k := range []string{"VmHWM", "VmRSS", "RssAnon", "RssFile"} {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				parts = append(parts, k+" "+strings.Join(strings.Fields(v), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}
