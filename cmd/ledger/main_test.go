package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

// statusEnv names the file the ledger command in a script writes its exit
// status to, for the status command to check.
const statusEnv = "LEDGER_TEST_STATUS_FILE"

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ledger": func() {
			code := run(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr)
			if f := os.Getenv(statusEnv); f != "" {
				if err := os.WriteFile(f, []byte(strconv.Itoa(code)), 0o644); err != nil {
					fmt.Fprintf(os.Stderr, "writing exit status: %v\n", err)
					os.Exit(100)
				}
			}
			os.Exit(code)
		},
		// corruptchunk runs in its own process, like ledger: badger frees
		// its directory lock by closing the file, so a lock taken in the
		// test process could live on in a child forked meanwhile for a
		// script running in parallel.
		"corruptchunk": func() {
			if err := corruptChunk(os.Args[1:]); err != nil {
				fmt.Fprintf(os.Stderr, "corruptchunk: %v\n", err)
				os.Exit(1)
			}
			os.Exit(0)
		},
	})
}

// TestScripts runs the transcripts in testdata/script. Besides the builtin
// commands they can use:
//
//	status CODE                 the last ledger command exited with CODE
//	perm FILE MODE              FILE's permission bits are MODE (octal)
//	replace FILE OLD NEW        replace every OLD in FILE by NEW; OLD must occur
//	corruptchunk DATADIR DIGEST flip a bit in the stored chunk named DIGEST
//
// status reads a file the ledger command writes, so it reports on the last
// ledger command only.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/script",
		RequireUniqueNames: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("CI", "true") // never draw progress bars
			e.Setenv(statusEnv, filepath.Join(e.WorkDir, ".ledger-status"))
			td, err := filepath.Abs("../../testdata")
			if err != nil {
				return err
			}
			e.Setenv("TESTDATA", td) // the sample bundle and .sdoc fixtures
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":  cmdStatus,
			"perm":    cmdPerm,
			"replace": cmdReplace,
		},
	})
}

func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: status CODE")
	}
	// Read the status once, so that a status check cannot pass on the
	// status of an earlier command.
	name := ts.Getenv(statusEnv)
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		ts.Fatalf("status: no ledger command has run since the last status check")
	}
	ts.Check(err)
	ts.Check(os.Remove(name))
	if got := string(b); got != args[0] {
		ts.Fatalf("ledger exited with status %s, want %s", got, args[0])
	}
}

func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("perm: bad mode %q: %v", args[1], err)
	}
	st, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := st.Mode().Perm()
	switch {
	case neg && got == os.FileMode(want):
		ts.Fatalf("%s has mode %#o, want any other", args[0], got)
	case !neg && got != os.FileMode(want):
		ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
	}
}

func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	name := ts.MkAbs(args[0])
	b, err := os.ReadFile(name)
	ts.Check(err)
	if !bytes.Contains(b, []byte(args[1])) {
		ts.Fatalf("replace: %q does not occur in %s", args[1], args[0])
	}
	b = bytes.ReplaceAll(b, []byte(args[1]), []byte(args[2]))
	ts.Check(os.WriteFile(name, b, 0o644))
}

// corruptChunk damages a chunk in a closed ledger's badger store: args are
// DATADIR DIGEST. The key layout ("cas/c/" and the chunk's raw SHA-256) is
// package cas's; a blob under the chunk size is one chunk, so its digest
// names that chunk.
func corruptChunk(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: corruptchunk DATADIR DIGEST")
	}
	d, err := cas.ParseDigest(args[1])
	if err != nil {
		return err
	}
	db, err := badger.Open(cas.DefaultBadgerOptions(filepath.Join(args[0], "db"), nil))
	if err != nil {
		return err
	}
	key := append([]byte("cas/c/"), d[:]...)
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return fmt.Errorf("chunk %s: %w", d, err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)/2] ^= 0x01
		return txn.Set(key, v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string // every line must appear
	}{
		{"success", nil, 0, ""},
		{"help after arguments", errHelpShown, 0, ""},
		{"usage", usagef("put takes one FILE"), 2, "ledger: put takes one FILE\nrun 'ledger help'"},
		{"wrapped usage", fmt.Errorf("x: %w", usagef("bad")), 2, "ledger: bad\n"},
		{"failed check", failure{errors.New("receipt r.json does not verify")}, 1, "ledger: receipt r.json does not verify\n"},
		{"interrupted", fmt.Errorf("appending: %w", context.Canceled), 1, "ledger: interrupted\n"},
		{"not a ledger", fmt.Errorf("opening d: %w", ledger.ErrNotLedger), 1, "hint: create a ledger with `ledger init"},
		{"corrupt blob", fmt.Errorf("reading: %w", cas.ErrCorrupt), 1, "hint: the store holds damaged data; run `ledger audit`"},
		{"other", errors.New("disk on fire"), 1, "ledger: disk on fire\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := exitCode(tt.err, &stderr); got != tt.code {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.code)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("exitCode(%v) printed %q, want it to contain %q", tt.err, stderr.String(), tt.stderr)
			}
			if tt.err == nil || errors.Is(tt.err, errHelpShown) {
				if stderr.Len() != 0 {
					t.Errorf("exitCode(%v) printed %q, want nothing", tt.err, stderr.String())
				}
			}
		})
	}
}

// TestRunWriters checks that run writes only to the writers it is given.
func TestRunWriters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"ledger", "init", "--data", dir, "--origin", "ledger.example.com/test"}, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("ledger init = %d, want 0; stderr:\n%s", code, stderr.String())
	}
	pub, err := os.ReadFile(filepath.Join(dir, ledger.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != string(pub) {
		t.Errorf("ledger init printed %q, want the contents of log.pub %q", got, pub)
	}

	stdout.Reset()
	stderr.Reset()
	code = run(t.Context(), []string{"ledger", "put", "--data", dir, "-"}, strings.NewReader("hello evidence\n"), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("ledger put - = %d, want 0; stderr:\n%s", code, stderr.String())
	}
	const want = "sha256:fe482b5e524c67728f4f2b4f430cd10d9a25659641f995ae537b282ccd181e0b\n"
	if got := stdout.String(); got != want {
		t.Errorf("ledger put - printed %q, want %q", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("ledger put - wrote %q to stderr, want nothing", stderr.String())
	}
}

func TestSignerStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var s release.SignerState
	for _, c := range []struct {
		until   string
		revoked bool
		want    string
	}{
		{"", false, "active"},
		{"2027-01-01T00:00:00Z", false, "active until 2027-01-01T00:00:00Z"},
		{"2026-11-25T12:00:00Z", false, "expired 2026-11-25T12:00:00Z: signatures made before then still count"},
		{"2026-01-01T00:00:00Z", true, "revoked "},
	} {
		s.Enrolment.ValidUntil, s.Revoked = c.until, c.revoked
		if got := signerStatus(s, now); !strings.HasPrefix(got, c.want) {
			t.Errorf("signerStatus(valid until %q, revoked %v) = %q, want %q", c.until, c.revoked, got, c.want)
		}
	}
}

func TestMalformedURL(t *testing.T) {
	for _, c := range []struct {
		s   string
		bad bool
	}{
		{"s3:/pub/x", true}, {"S3:pub", true}, {"postgres:/postgres@h:1/db", true}, {"postgresql:mig", true},
		{"s3://pub/x", false}, {"postgres://u@h/db", false}, {"./s3:/pub", false}, {"data", false}, {"/srv/ledger", false}, {"c:data", false}, {"", false},
	} {
		if err := malformedURL("--to", c.s); (err != nil) != c.bad {
			t.Errorf("malformedURL(%q) = %v, want an error: %v", c.s, err, c.bad)
		}
	}
}
