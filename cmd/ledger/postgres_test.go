package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
)

// TestPostgres runs the transcripts in testdata/postgres against a
// PostgreSQL server of its own (TestMain belongs to testscript), each
// script with new databases in its environment:
//
//	PGURL     a new database's URL, as the test server gives it
//	PGURL_PW  the same URL with a password (the server trusts every
//	          connection, so it is accepted and ignored)
//	PGURL2    another new database
//	PGURL3    a third
func TestPostgres(t *testing.T) {
	server := pgtest.ForTest(t)
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/postgres",
		RequireUniqueNames: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("CI", "true")
			e.Setenv(statusEnv, filepath.Join(e.WorkDir, ".ledger-status"))
			url, err := server.CreateDatabase(t.Context())
			if err != nil {
				return err
			}
			url2, err := server.CreateDatabase(t.Context())
			if err != nil {
				return err
			}
			url3, err := server.CreateDatabase(t.Context())
			if err != nil {
				return err
			}
			e.Setenv("PGURL", url)
			e.Setenv("PGURL_PW", strings.Replace(url, "postgres@", "postgres:secret-pw@", 1))
			e.Setenv("PGURL2", url2)
			e.Setenv("PGURL3", url3)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":  cmdStatus,
			"replace": cmdReplace,
		},
	})
}

// A local command on a data directory whose log is shared on PostgreSQL
// appends only while it can take the sequencer lock: while a replica holds
// it, the command reads as a follower and refuses to append.
func TestLocalAppendWaitsForTheLock(t *testing.T) {
	server := pgtest.ForTest(t)
	url, err := server.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "d")
	runLedger(t, "init", "--data", dir, "--origin", "lock.example.com/log", "--log", url)
	file := func(name string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	runLedger(t, "append", "--data", dir, file("a.txt"))

	replica, err := postgres.AcquireSequencer(t.Context(), url, postgres.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"ledger", "append", "--data", dir, file("b.txt")}, strings.NewReader(""), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "append through it with --node URL") {
		t.Errorf("append while a replica holds the lock: exit %d\n%s", code, stderr.String())
	}
	if got := runLedger(t, "checkpoint", "--data", dir); !strings.Contains(got, "\n1\n") {
		t.Errorf("checkpoint while a replica holds the lock = %q, want size 1", got)
	}
	replica.Release()
	runLedger(t, "append", "--data", dir, file("c.txt"))
	if got := runLedger(t, "checkpoint", "--data", dir); !strings.Contains(got, "\n2\n") {
		t.Errorf("checkpoint after the lock was released = %q, want size 2", got)
	}
}
