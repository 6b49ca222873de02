package postgres_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// TestSequencerAddress checks that the replica holding the sequencer lock
// is found by the address it wrote down, signed with the log key, and only
// while it holds the lock: a row left behind by a replica that gave the
// lock up names no one, and a row written by anyone without the key (a
// database user redirecting the replicas' forwarded writes and tokens) is
// refused.
func TestSequencerAddress(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	s := openStorage(t, url)
	k := newLogKey(t, "pg.example.com/advertise")
	if u, err := s.Sequencer(ctx, k.verifier); !errors.Is(err, postgres.ErrNoSequencer) {
		t.Errorf("before any sequencer: %q, %v; want ErrNoSequencer", u, err)
	}
	if _, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: "http://a.example:8080"}); err == nil {
		t.Error("an address advertised without the log key to sign it was accepted")
	}
	a, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: "http://a.example:8080", Signer: k.signer})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Sequencer(ctx, k.verifier); err != nil || u != "http://a.example:8080" {
		t.Errorf("while a holds the lock: %q, %v", u, err)
	}
	other := newLogKey(t, "pg.example.com/advertise")
	if u, err := s.Sequencer(ctx, other.verifier); err == nil {
		t.Errorf("the address checked with another log's key: %q, want a refusal", u)
	}
	// Someone with write access to the database points the replicas
	// elsewhere, keeping the lock holder's pid.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var signed string
	if err := conn.QueryRow(ctx, `SELECT url FROM ledger_sequencer`).Scan(&signed); err != nil {
		t.Fatal(err)
	}
	for _, forged := range []string{"http://attacker.example/", strings.Replace(signed, "a.example:8080", "attacker.example", 1)} {
		if _, err := conn.Exec(ctx, `UPDATE ledger_sequencer SET url = $1`, forged); err != nil {
			t.Fatal(err)
		}
		if u, err := s.Sequencer(ctx, k.verifier); err == nil {
			t.Errorf("a forged address %q was followed to %q", forged, u)
		}
	}
	// A genuine note of an earlier sequencer (another backend's pid),
	// replayed under the lock holder's pid, is refused too.
	var pid int32
	if err := conn.QueryRow(ctx, `SELECT pid FROM ledger_sequencer`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	replayed, err := note.Sign(&note.Note{Text: fmt.Sprintf("evidence-ledger sequencer v1\nhttp://old.example\n%d\n", pid+1)}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE ledger_sequencer SET url = $1`, string(replayed)); err != nil {
		t.Fatal(err)
	}
	if u, err := s.Sequencer(ctx, k.verifier); err == nil {
		t.Errorf("a replayed note naming backend %d was followed to %q", pid+1, u)
	}
	if _, err := conn.Exec(ctx, `UPDATE ledger_sequencer SET url = $1`, signed); err != nil {
		t.Fatal(err)
	}
	if u, err := s.Sequencer(ctx, k.verifier); err != nil || u != "http://a.example:8080" {
		t.Errorf("the genuine note restored: %q, %v", u, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	// The server ends a's session a moment after its connection closes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := s.Sequencer(ctx, k.verifier)
		if errors.Is(err, postgres.ErrNoSequencer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a released the lock: %q, %v; want ErrNoSequencer", u, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: "https://b.example", Signer: k.signer})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if u, err := s.Sequencer(ctx, k.verifier); err != nil || u != "https://b.example" {
		t.Errorf("while b holds the lock: %q, %v", u, err)
	}
}
