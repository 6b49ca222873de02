package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/proofs"
)

func (e *env) monitorCommand() *cli.Command {
	return &cli.Command{
		Name:      "monitor",
		Usage:     "follow a node: verify each new checkpoint and its consistency with the last one saved; fail loudly on a fork or rollback",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node", EnvVars: []string{"LEDGER_NODE"}, Usage: "the node's `URL`"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"LEDGER_TOKEN"}, Usage: "a token, if the node's reads need one"},
			&cli.StringFlag{Name: "log-key", Usage: "the log's public key `FILE` (log.pub), as handed to you"},
			&cli.StringFlag{Name: "state", Usage: "`FILE` keeping the last verified checkpoint between runs"},
			&cli.DurationFlag{Name: "interval", Value: 30 * time.Second, Usage: "time between checks"},
			&cli.BoolFlag{Name: "once", Usage: "check once and exit (for cron)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "node", "log-key", "state"); err != nil {
				return err
			}
			vkey, err := os.ReadFile(c.String("log-key"))
			if err != nil {
				return usageError{fmt.Errorf("--log-key: %w", err)}
			}
			verifier, err := proofs.NewVerifier(strings.TrimSpace(string(vkey)))
			if err != nil {
				return usageError{fmt.Errorf("--log-key: %w", err)}
			}
			cl, err := nodeClient(c)
			if err != nil {
				return err
			}
			state := c.String("state")
			failed := 0 // checks failed in a row
			for {
				prev, err := os.ReadFile(state)
				if errors.Is(err, os.ErrNotExist) {
					prev, err = nil, nil
				}
				if err != nil {
					return err
				}
				obs, err := cl.Observe(c.Context, verifier, prev)
				switch {
				case errors.Is(err, client.ErrFork), errors.Is(err, client.ErrRollback):
					fmt.Fprintf(e.stderr, "!!! %v\n!!! the saved checkpoint (%s) and the node's are both signed by the log key: keep them as evidence\n", err, state)
					if obs.Checkpoint != nil {
						if werr := os.WriteFile(state+".conflict", obs.Checkpoint, 0o644); werr == nil {
							fmt.Fprintf(e.stderr, "!!! the node's conflicting checkpoint is saved in %s\n", state+".conflict")
						}
					}
					return failure{fmt.Errorf("monitor: %v", errors.Unwrap(err))}
				case errors.Is(err, client.ErrUnverified):
					// Another log, a wrong --log-key or a tampered state
					// file: no later check can pass, so stop loudly.
					fmt.Fprintf(e.stderr, "!!! %v\n!!! check --log-key (%s) and the state file (%s)\n", err, c.String("log-key"), state)
					return failure{fmt.Errorf("monitor: %v", err)}
				case refused(err):
					// A missing, unknown or revoked token, or one without
					// the role: waiting does not change that.
					return fmt.Errorf("monitor: %w", err)
				case err != nil:
					if c.Bool("once") {
						return err
					}
					failed++
					if failed >= 3 {
						fmt.Fprintf(e.stderr, "!!! monitor: %d checks in a row failed; the node cannot be watched: %v\n", failed, err)
					} else {
						fmt.Fprintf(e.stderr, "monitor: %v (retrying in %v)\n", err, c.Duration("interval"))
					}
				default:
					failed = 0
					if obs.Previous == nil || obs.Grew {
						if err := writeAtomic(state, obs.Checkpoint); err != nil {
							return err
						}
					}
					from := "first checkpoint"
					if obs.Previous != nil {
						from = fmt.Sprintf("consistent with size %d", obs.Previous.Size)
					}
					fmt.Fprintf(e.stdout, "%s ok %s size %d (%s)\n", time.Now().UTC().Format(time.RFC3339), obs.Current.Origin, obs.Current.Size, from)
				}
				if c.Bool("once") {
					return nil
				}
				select {
				case <-c.Context.Done():
					return nil
				case <-time.After(c.Duration("interval")):
				}
			}
		},
	}
}

// writeAtomic replaces path with b through a synced temporary file.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// refused reports whether err is the node refusing the request's token
// (401 or 403), which no retry mends.
func refused(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && (ce.Status == http.StatusUnauthorized || ce.Status == http.StatusForbidden)
}
