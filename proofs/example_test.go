package proofs_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"

	"github.com/transparency-dev/merkle/compact"

	"github.com/tracealm/evidence-ledger/proofs"
)

// This example plays both parts. The log appends entries, signs a
// checkpoint and proves one entry's inclusion in a receipt; the auditor
// checks the receipt offline with nothing but the log's public key.
func ExampleVerifyReceipt() {
	ctx := context.Background()

	// The log's key, as log.key holds it. A real one is secret; this one
	// is for the example only.
	signer, err := proofs.NewSigner("PRIVATE+KEY+ledger.example.com/dhf+dc221db9+ATVJF+3he+4NuF/TeKmNgJ9mfJoHYRPV8kEJjCGCEEKN")
	if err != nil {
		log.Fatal(err)
	}

	// The log appends entries, storing each hash the compact range reports
	// at its stored-hash index.
	entries := [][]byte{
		[]byte(`{"kind":"artefact","logged_at":"2025-03-01T09:00:00Z","logged_by":"ci","subject":{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","media_type":"text/html","name":"rtm.html","size":48213},"v":1}`),
		[]byte(`{"kind":"artefact","logged_at":"2025-03-01T09:00:01Z","logged_by":"ci","subject":{"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","media_type":"application/vnd.microsoft.portable-executable","name":"bioflow_pro.exe","size":7340032},"v":1}`),
		[]byte(`{"kind":"artefact","logged_at":"2025-03-01T09:00:02Z","logged_by":"ci","subject":{"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","media_type":"text/plain","name":"SHA256SUMS","size":212},"v":1}`),
	}
	stored := make(map[uint64][]byte)
	tree := proofs.NewRangeFactory().NewEmptyRange(0)
	for _, e := range entries {
		err := tree.Append(proofs.LeafHash(e), func(id compact.NodeID, h []byte) {
			stored[proofs.NodeIndex(id)] = h
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	reader := proofs.HashReaderFunc(func(_ context.Context, indexes []uint64) ([][]byte, error) {
		hashes := make([][]byte, len(indexes))
		for i, x := range indexes {
			h, ok := stored[x]
			if !ok {
				return nil, fmt.Errorf("hash %d is not stored", x)
			}
			hashes[i] = h
		}
		return hashes, nil
	})

	// It signs a checkpoint of the tree and returns the receipt of entry 1.
	size := uint64(len(entries))
	root, err := proofs.TreeRoot(ctx, reader, size)
	if err != nil {
		log.Fatal(err)
	}
	checkpoint, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: signer.Name(), Size: size, Root: root}, signer)
	if err != nil {
		log.Fatal(err)
	}
	const index = 1
	p, err := proofs.ProveInclusion(ctx, reader, index, size)
	if err != nil {
		log.Fatal(err)
	}
	receiptJSON, err := json.Marshal(proofs.Receipt{
		Origin:      signer.Name(),
		Index:       index,
		Entry:       entries[index],
		EntryDigest: proofs.EntryDigest(entries[index]),
		Inclusion:   proofs.ReceiptInclusion{TreeSize: size, Hashes: p.Hashes},
		Checkpoint:  string(checkpoint),
	})
	if err != nil {
		log.Fatal(err)
	}

	// The auditor holds log.pub and the receipt file.
	verifier, err := proofs.NewVerifier("ledger.example.com/dhf+dc221db9+Affj1YN4vIR65zCZDmfk+iMKDffrJVremeFIwXSI9Inr")
	if err != nil {
		log.Fatal(err)
	}
	r, err := proofs.ParseReceipt(receiptJSON)
	if err != nil {
		log.Fatal(err)
	}
	c, err := proofs.VerifyReceipt(r, verifier)
	if err != nil {
		fmt.Println("receipt does not verify:", err)
		return
	}
	fmt.Printf("entry %d, %s\n", r.Index, r.EntryDigest)
	fmt.Printf("is in %s at tree size %d, root %s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))

	// A receipt for an altered entry does not verify, even with a matching
	// digest.
	r.Entry = []byte(`{"kind":"artefact","subject":{"name":"bioflow_pro.exe","size":1},"v":1}`)
	r.EntryDigest = proofs.EntryDigest(r.Entry)
	_, err = proofs.VerifyReceipt(r, verifier)
	fmt.Println("altered entry rejected:", errors.Is(err, proofs.ErrInvalidProof))

	// Output:
	// entry 1, sha256:1048c2bf4ebedfe90309dfde120940183c340f40d4fedc6e7870a64ae77fb5f8
	// is in ledger.example.com/dhf at tree size 3, root 9UgPLv0aEHR/MMsm7wP7vd164+y4rvsSl4wG0irL2bE=
	// altered entry rejected: true
}
