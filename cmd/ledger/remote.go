package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/proofs"
)

// nodeFlags name a node for commands that work locally or remotely.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "node", EnvVars: []string{"LEDGER_NODE"}, Usage: "work against the node at `URL` instead of a data directory"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"LEDGER_TOKEN"}, Usage: "the node token, when its reads need one"},
	}
}

// logReader is what the read commands need, from a local ledger or a node.
type logReader interface {
	// Checkpoint returns the latest signed checkpoint, CheckpointAt the
	// one signed at size.
	Checkpoint(ctx context.Context) ([]byte, error)
	CheckpointAt(ctx context.Context, size uint64) ([]byte, error)
	// ProveInclusion and ProveConsistency take 0 for the current size.
	ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error)
	ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error)
}

// localReader reads a ledger opened from its data directory.
type localReader struct{ l *ledger.Ledger }

func (r localReader) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, _ := r.l.Log.Checkpoint()
	return cp, nil
}

func (r localReader) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	return r.l.Log.CheckpointAt(ctx, size)
}

func (r localReader) ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error) {
	return r.l.Log.ProveInclusion(ctx, index, size)
}

func (r localReader) ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error) {
	return r.l.Log.ProveConsistency(ctx, from, to)
}

// reader returns the node named by --node (LEDGER_NODE), or else the
// local ledger of --data (LEDGER_DATA), and a function that releases it.
func (e *env) reader(c *cli.Context) (logReader, func(), error) {
	if u := c.String("node"); u != "" {
		cl, err := client.New(u, c.String("token"))
		if err != nil {
			return nil, nil, usageError{err}
		}
		return cl, func() {}, nil
	}
	l, err := e.open(c)
	if err != nil {
		return nil, nil, err
	}
	return localReader{l}, func() { l.Close() }, nil
}
