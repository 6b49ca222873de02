// Command ledger is Evidence Ledger's command-line tool: it initialises and
// operates a ledger data directory, appends evidence, prints checkpoints and
// proofs, verifies receipts offline and audits a store.
//
// Exit status: 0 success, 1 a failed check or operation, 2 a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status. It never exits
// the process itself, so tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, args)
	return exitCode(err, stderr)
}

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// failure is a check that ran and failed: exit status 1, message already
// printed by the command.
type failure struct{ err error }

func (e failure) Error() string { return e.err.Error() }
func (e failure) Unwrap() error { return e.err }

// exitCode prints err, with a hint where one helps, and maps it to an exit
// status. It is the one place errors become exit codes.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return 0
	}
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(stderr, "ledger: %v\nrun 'ledger help' or 'ledger COMMAND --help' for usage\n", u.err)
		return 2
	}
	var f failure
	if errors.As(err, &f) {
		fmt.Fprintf(stderr, "ledger: %v\n", f.err)
		return 1
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "ledger: interrupted")
		return 1
	}
	fmt.Fprintf(stderr, "ledger: %v\n", err)
	if h := hint(err); h != "" {
		fmt.Fprintf(stderr, "hint: %s\n", h)
	}
	return 1
}
