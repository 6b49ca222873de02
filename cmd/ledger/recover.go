package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/ledger"
)

// recoverCommand checks badger's own logs in a data directory and, when
// told to, lets badger open a store it would otherwise refuse: one whose
// write-ahead log or last value-log file has a damaged record followed by
// intact ones (ledger.ErrLogDamaged). A copy of the store as it was is
// kept first, which undoes the command if put back.
func (e *env) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "check the store's own write logs for damage; with --discard-damaged-records, open it without the records after the damage",
		Description: "A store that was not closed cleanly is replayed from badger's write-ahead log when it opens. " +
			"A record damaged in the middle of that log (a flipped bit, a bad sector) would make badger cut off every record after it, " +
			"acknowledged ones included, so every command refuses such a store. Restoring the data directory from a backup is the safe repair. " +
			"If the machine lost power while writing, the records after the damage may never have been acknowledged: " +
			"--discard-damaged-records then keeps a copy of the store as it was (in DIR/damaged-TIME/db) and opens the store without them. " +
			"Run ledger audit afterwards: it fails if the log no longer holds the last checkpoint the node served.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.BoolFlag{Name: "discard-damaged-records", Usage: "keep a copy of the store as it is, then open it without the records after the damage"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			err = ledger.CheckStore(dir)
			switch {
			case err == nil:
				fmt.Fprintf(e.stdout, "the store's write logs in %s have no damaged records; nothing to recover\n", dir)
				return nil
			case !errors.Is(err, ledger.ErrLogDamaged):
				return err
			case !c.Bool("discard-damaged-records"):
				fmt.Fprintf(e.stdout, "DAMAGED  %v\n", err)
				return failure{fmt.Errorf("the store is damaged; nothing was changed: restore the data directory from a backup, or, if the machine lost power while writing, run ledger recover --discard-damaged-records")}
			}
			fmt.Fprintf(e.stdout, "DAMAGED  %v\n", err)
			aside, err := ledger.SetAsideStore(dir, time.Now())
			if err != nil {
				return fmt.Errorf("setting the damaged store aside: %w; nothing was changed", err)
			}
			fmt.Fprintf(e.stdout, "copied   the store as it was to %s (to undo what follows, with no ledger process running, put %s in place of %s)\n",
				aside, filepath.Join(aside, "db"), filepath.Join(dir, "db"))
			opts := openOptions(c, e.logger())
			opts.AuditOnly, opts.DiscardDamagedRecords = true, true
			l, err := ledger.Open(c.Context, dir, opts)
			if err != nil {
				return err
			}
			if err := l.Close(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "opened   the store without the records after the damage\nnow run  ledger audit --data %s\n", dir)
			return nil
		},
	}
}
