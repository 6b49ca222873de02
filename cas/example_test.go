package cas_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
)

func ExampleParseDigest() {
	d, err := cas.ParseDigest("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	fmt.Println(d == cas.Sum([]byte("abc")), err)

	_, err = cas.ParseDigest("sha256:BA7816BF")
	fmt.Println(err)
	// Output:
	// true <nil>
	// parsing digest "sha256:BA7816BF": 8 hex digits, want sha256:<64 lowercase hex digits>: invalid digest
}

func ExampleBadger() {
	dir, err := os.MkdirTemp("", "cas-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := badger.Open(cas.DefaultBadgerOptions(dir, nil))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Put with the digest the sender announced: different content is refused and not stored.
	want := cas.Sum([]byte("SHA256SUMS for release v1.2.0\n"))
	_, err = store.Put(ctx, strings.NewReader("tampered\n"), &want)
	fmt.Println(errors.Is(err, cas.ErrDigestMismatch))

	info, err := store.Put(ctx, strings.NewReader("SHA256SUMS for release v1.2.0\n"), &want)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Digest, info.Size)

	// Get verifies the content as it copies it.
	if _, err := cas.Get(ctx, store, info.Digest, os.Stdout); err != nil {
		log.Fatal(err)
	}
	// Output:
	// true
	// sha256:499d58e7ed5e81b3737d2ad4de22aab1b7b45b2a2d9568ce52da5a429c1f62a3 30
	// SHA256SUMS for release v1.2.0
}
