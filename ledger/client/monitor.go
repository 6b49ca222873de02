package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/proofs"
)

// Errors a monitor raises. Each means the log was rewritten or the node
// lies: alert a person.
var (
	ErrRollback = errors.New("ROLLBACK: the node's log is smaller than one it signed before")
	ErrFork     = errors.New("FORK: the node's log is not an extension of the one it signed before")
	// ErrUnverified is a checkpoint, the node's or the saved one, that
	// does not verify with the log key: another log, a wrong key, or
	// tampering. Waiting does not mend it.
	ErrUnverified = errors.New("does not verify with the log key")
)

// Observation is one check of a node by a monitor.
type Observation struct {
	Previous   *proofs.Checkpoint // the checkpoint saved last time, if any
	Current    proofs.Checkpoint
	Checkpoint []byte // the current signed checkpoint, to save for next time
	Grew       bool   // the tree grew since Previous (and is consistent with it)
}

// Observe fetches the node's checkpoint, verifies its signature with
// verifier, and checks it against prev (the signed checkpoint saved last
// time, nil at first): a smaller tree is ErrRollback; a different root at
// the same size, or a consistency proof that fails, is ErrFork. Only a
// verified, consistent checkpoint is returned for saving.
func (c *Client) Observe(ctx context.Context, verifier note.Verifier, prev []byte) (Observation, error) {
	var obs Observation
	if prev != nil {
		p, err := proofs.OpenCheckpoint(prev, verifier)
		if err != nil {
			return obs, fmt.Errorf("the saved checkpoint %w: %w", ErrUnverified, err)
		}
		obs.Previous = &p
	}
	signed, err := c.Checkpoint(ctx)
	if err != nil {
		return obs, err
	}
	cur, err := proofs.OpenCheckpoint(signed, verifier)
	if err != nil {
		return obs, fmt.Errorf("the node's checkpoint %w: %w", ErrUnverified, err)
	}
	obs.Current, obs.Checkpoint = cur, signed
	p := obs.Previous
	switch {
	case p == nil:
		return obs, nil
	case cur.Size < p.Size:
		return obs, fmt.Errorf("%w: it now signs size %d, after signing size %d", ErrRollback, cur.Size, p.Size)
	case cur.Size == p.Size:
		if !bytes.Equal(cur.Root, p.Root) {
			return obs, fmt.Errorf("%w: two different roots signed for size %d", ErrFork, cur.Size)
		}
		return obs, nil
	}
	proof, err := c.ProveConsistency(ctx, p.Size, cur.Size)
	if err != nil {
		return obs, fmt.Errorf("fetching the consistency proof from %d to %d: %w", p.Size, cur.Size, err)
	}
	if proof.From != p.Size || proof.To != cur.Size {
		return obs, fmt.Errorf("%w: asked for a proof from %d to %d, got one from %d to %d", ErrFork, p.Size, cur.Size, proof.From, proof.To)
	}
	if err := proofs.VerifyConsistency(proof, p.Root, cur.Root); err != nil {
		return obs, fmt.Errorf("%w: size %d is not a prefix of size %d: %v", ErrFork, p.Size, cur.Size, err)
	}
	obs.Grew = true
	return obs, nil
}
