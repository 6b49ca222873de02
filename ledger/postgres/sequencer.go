package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/note"
)

// DefaultHeartbeat is how often a SequencerLock checks its connection.
const DefaultHeartbeat = time.Second

// DefaultLease is the shortest lease AcquireSequencer takes by default.
const DefaultLease = 10 * time.Second

// sequencerLock is the advisory lock key of the one active sequencer of the
// log in a database ("ledgseq" in ASCII).
const sequencerLock = 0x6c656467736571

// SequencerLock is the right to sequence the log in one database: a
// session-level advisory lock held on a connection of its own. Several
// replicas may share a database; the one holding the lock commits, and the
// others serve reads. The lock is lost with its connection (the server
// ends the session, the network fails, the process dies), and PostgreSQL
// then gives it to the next replica that waits for it.
//
// Losing the lock cannot fork the log: the schema refuses any commit that
// does not extend the stored head, so a replica that commits after it lost
// the lock either extends the head (and its entries stand) or gets
// ledger.ErrConflict. A replica that sees Lost closed must stop its log;
// the new holder opens its own log, which resumes at the stored head.
type SequencerLock struct {
	conn *pgx.Conn
	lost chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// LockOptions configure AcquireSequencer. The zero value is the default.
type LockOptions struct {
	// Heartbeat is how often the lock's connection is checked; losing the
	// lock is noticed within about one heartbeat. Zero means
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Lease is how long the database keeps the lock of a holder that
	// stops checking its connection (a frozen process or machine, whose
	// kernel still keeps the connection open): the server ends the idle
	// session, which frees the lock for another replica. Zero means ten
	// heartbeats, and at least DefaultLease.
	Lease time.Duration
	// Advertise, when set, is the URL this replica serves at, written
	// down once it holds the lock, signed with Signer (the log's key), so
	// that the other replicas can forward writes to it
	// (Storage.Sequencer). Signer is required with it.
	Advertise string
	Signer    note.Signer
	// NoWait makes AcquireSequencer fail with ErrLocked at once when
	// another session holds the lock, rather than wait for it.
	NoWait bool
}

// ErrLocked is AcquireSequencer's answer, with NoWait, while another
// session holds the sequencer lock.
var ErrLocked = errors.New("another replica holds the sequencer lock")

// AcquireSequencer connects to the database at connString and waits until
// it holds the sequencer lock or ctx is done. The caller must Release it.
func AcquireSequencer(ctx context.Context, connString string, opts LockOptions) (*SequencerLock, error) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Lease <= 0 {
		opts.Lease = max(10*opts.Heartbeat, DefaultLease)
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("taking the sequencer lock: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "evidence-ledger sequencer"
	where := describe(cfg.Config)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("taking the sequencer lock: %w at %s: %w", ErrUnreachable, where, err)
	}
	if opts.NoWait {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(sequencerLock)).Scan(&got); err != nil || !got {
			conn.Close(context.Background())
			if err == nil {
				err = ErrLocked
			}
			return nil, fmt.Errorf("taking the sequencer lock at %s: %w", where, err)
		}
	} else if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(sequencerLock)); err != nil {
		// pgx cancels the waiting query on the server when ctx ends.
		conn.Close(context.Background())
		return nil, fmt.Errorf("taking the sequencer lock at %s: %w", where, err)
	}
	// The heartbeat's pings keep the session busy; without them the
	// server ends it after the lease, and the lock with it. A server
	// without the setting (before PostgreSQL 14, or a compatible one)
	// keeps the lock until the connection breaks, as before.
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET idle_session_timeout = %d", opts.Lease.Milliseconds())); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			conn.Close(context.Background())
			return nil, fmt.Errorf("taking the sequencer lock at %s: %w", where, err)
		}
	}
	if opts.Advertise != "" {
		if opts.Signer == nil {
			conn.Close(context.Background())
			return nil, errors.New("taking the sequencer lock: an address to advertise needs the log's key to sign it")
		}
		if err := advertise(ctx, conn, opts.Advertise, opts.Signer); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	l := &SequencerLock{conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
	l.wg.Go(func() { l.heartbeat(opts.Heartbeat) })
	return l, nil
}

// heartbeat checks the connection until it fails or Release stops it.
func (l *SequencerLock) heartbeat(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every+5*time.Second)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			close(l.lost)
			return
		}
	}
}

// Lost returns a channel closed once the lock is known to be lost.
func (l *SequencerLock) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up by closing its connection, for the next
// replica to take. It is safe to call more than once.
func (l *SequencerLock) Release() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = l.conn.Close(ctx)
	})
	return err
}
