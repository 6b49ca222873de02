package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

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
			e.Setenv("PGURL", url)
			e.Setenv("PGURL_PW", strings.Replace(url, "postgres@", "postgres:secret-pw@", 1))
			e.Setenv("PGURL2", url2)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":  cmdStatus,
			"replace": cmdReplace,
		},
	})
}
