package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// TestSequencerAddress checks that the replica holding the sequencer lock
// is found by the address it wrote down, and only while it holds the lock:
// a row left behind by a replica that gave the lock up names no one.
func TestSequencerAddress(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	s := openStorage(t, url)
	if u, err := s.Sequencer(ctx); !errors.Is(err, postgres.ErrNoSequencer) {
		t.Errorf("before any sequencer: %q, %v; want ErrNoSequencer", u, err)
	}
	a, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: "http://a.example:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Sequencer(ctx); err != nil || u != "http://a.example:8080" {
		t.Errorf("while a holds the lock: %q, %v", u, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	// The server ends a's session a moment after its connection closes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := s.Sequencer(ctx)
		if errors.Is(err, postgres.ErrNoSequencer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a released the lock: %q, %v; want ErrNoSequencer", u, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: "https://b.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if u, err := s.Sequencer(ctx); err != nil || u != "https://b.example" {
		t.Errorf("while b holds the lock: %q, %v", u, err)
	}
}
