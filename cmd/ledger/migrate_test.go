package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
)

// runMigrate runs `ledger migrate args...` and returns its exit status,
// stdout and stderr. The command is wired here rather than through newApp,
// so that this test does not depend on where the command list names it.
func runMigrate(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
	app := &cli.App{
		Name: "ledger", Writer: &stdout, ErrWriter: &stderr,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       []*cli.Command{e.migrateCommand()},
	}
	for _, c := range app.Commands {
		setUsageHandler(c)
	}
	err := app.RunContext(t.Context(), append([]string{"ledger", "migrate"}, args...))
	return exitCode(err, &stderr), stdout.String(), stderr.String()
}

// runLedger runs another ledger command and fails t unless it succeeds.
func runLedger(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), append([]string{"ledger"}, args...), strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("ledger %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// newSourceDir makes a ledger in a new directory with n entries and a
// token, and closes it.
func newSourceDir(t *testing.T, origin string, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if _, err := ledger.Init(t.Context(), dir, origin); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := ledger.NewTokens(l.DB).Create(t.Context(), "ci", ledger.RoleAppender); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		info, err := l.Blobs.Put(t.Context(), strings.NewReader(fmt.Sprintf("evidence %d", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Digest: info.Digest, Size: info.Size, Name: fmt.Sprintf("f%d.txt", i), MediaType: "text/plain"}}
		if _, err := l.Log.Append(context.Background(), c, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestMigrate drives `ledger migrate` from a data directory to PostgreSQL
// with a new data directory, again (nothing left to copy), back to a data
// directory of its own, into a database holding another log (refused),
// and with flags that do not go together (a usage error). Progress stays
// off stderr, which is not a terminal here.
func TestMigrate(t *testing.T) {
	server := pgtest.ForTest(t)
	src := newSourceDir(t, "migrate.example.com/log", 12)
	url := server.NewDatabase(t)
	onPG := filepath.Join(t.TempDir(), "on-pg")

	code, stdout, stderr := runMigrate(t, "--from", src, "--to", url, "--to-data", onPG)
	if code != 0 || stderr != "" {
		t.Fatalf("migrate to PostgreSQL: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"copied       12 entries", "tokens       1 copied", onPG + " is a ledger of tree size 12"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("migrate to PostgreSQL printed %q, want it to say %q", stdout, want)
		}
	}
	want := runLedger(t, "checkpoint", "--data", src)
	if got := runLedger(t, "checkpoint", "--data", onPG); got != want {
		t.Errorf("checkpoint of the copy = %q, want %q", got, want)
	}
	runLedger(t, "audit", "--data", onPG)
	if got := runLedger(t, "token", "list", "--data", onPG); !strings.Contains(got, "ci") {
		t.Errorf("token list of the copy = %q, want the source's token ci", got)
	}
	// The copy's tokens are in its database, for every replica, signed
	// with the source's key.
	srcKeys, err := ledger.Open(t.Context(), src, ledger.OpenOptions{AuditOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	srcKeys.Close()
	dbTokens := func(url string) []string {
		t.Helper()
		s, err := postgres.Open(t.Context(), url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		store, err := s.Tokens(srcKeys.Signer, srcKeys.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := store.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tok := range ts {
			names = append(names, tok.Name)
		}
		return names
	}
	if got := dbTokens(url); !slices.Equal(got, []string{"ci"}) {
		t.Errorf("the tokens in the copy's database = %q, want the source's ci", got)
	}

	code, stdout, stderr = runMigrate(t, "--from", src, "--to", url, "--to-data", onPG, "--json")
	if code != 0 || stderr != "" || !strings.Contains(stdout, `"entries_copied": 0`) || !strings.Contains(stdout, `"resumed_from": 12`) {
		t.Fatalf("migrate again: exit %d, stdout %q, stderr %q; want nothing copied", code, stdout, stderr)
	}

	back := filepath.Join(t.TempDir(), "back")
	if code, _, stderr = runMigrate(t, "--from", onPG, "--to", back); code != 0 {
		t.Fatalf("migrate back to a data directory: exit %d, stderr %q", code, stderr)
	}
	if got := runLedger(t, "checkpoint", "--data", back); got != want {
		t.Errorf("checkpoint of the copy back = %q, want %q", got, want)
	}
	runLedger(t, "audit", "--data", back)
	if got := runLedger(t, "token", "list", "--data", back); !strings.Contains(got, "ci") {
		t.Errorf("token list of the copy back = %q, want ci, from the database", got)
	}

	other := newSourceDir(t, "other.example.com/log", 3)
	code, _, stderr = runMigrate(t, "--from", other, "--to", url)
	if code != 1 || !strings.Contains(stderr, "different log") {
		t.Errorf("migrate into a database holding another log: exit %d, stderr %q; want 1 and a refusal", code, stderr)
	}
	if got := runLedger(t, "checkpoint", "--data", onPG); got != want {
		t.Errorf("after the refused migration, checkpoint = %q, want %q", got, want)
	}
	// Refused with a new data directory to point at the copy: the
	// directory, with the copy of log.key it was given, is not left behind.
	newDir := filepath.Join(t.TempDir(), "refused")
	if code, _, stderr = runMigrate(t, "--from", other, "--to", url, "--to-data", newDir); code != 1 || !strings.Contains(stderr, "different log") {
		t.Errorf("migrate --to-data into a database holding another log: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(newDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused migration left %s behind: %v", newDir, err)
	}

	// The log alone, from one database to another, its checkpoints
	// checked with the key given.
	url2 := server.NewDatabase(t)
	code, _, stderr = runMigrate(t, "--from", url, "--to", url2, "--log-key", filepath.Join(other, ledger.PublicKeyFile))
	if code != 1 || !strings.Contains(stderr, "wrong log key") {
		t.Errorf("migrate checked with another ledger's key: exit %d, stderr %q; want 1 and a failed check", code, stderr)
	}
	code, stdout, stderr = runMigrate(t, "--from", url, "--to", url2, "--log-key", filepath.Join(src, ledger.PublicKeyFile))
	if code != 0 || !strings.Contains(stdout, "copied       12 entries") || strings.Contains(stdout, "tokens") ||
		!strings.Contains(stdout, "run again with --from the source's data directory and --to-data") {
		t.Errorf("migrate the log alone: exit %d, stdout %q, stderr %q; want no tokens, which need the log key", code, stdout, stderr)
	}
	// From a data directory, the log alone takes the directory's tokens.
	url3 := server.NewDatabase(t)
	code, stdout, stderr = runMigrate(t, "--from", src, "--to", url3)
	if code != 0 || !strings.Contains(stdout, "tokens       1 copied into the log's database") {
		t.Errorf("migrate the log alone from a directory: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := dbTokens(url3); !slices.Equal(got, []string{"ci"}) {
		t.Errorf("the tokens in the log-only copy's database = %q, want the source directory's ci", got)
	}

	code, _, stderr = runMigrate(t, "--from", src, "--to", back, "--to-data", onPG)
	if code != 2 {
		t.Errorf("migrate --to DIR --to-data DIR: exit %d, stderr %q; want 2", code, stderr)
	}
}
