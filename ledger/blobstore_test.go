package ledger_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
)

// outsideStore is a blob store kept outside the data directory: a badger
// store of its own, in the directory its URL's host names, so that the
// ledger's wiring of an injected blob store is tested without a network.
type outsideStore struct {
	*cas.Badger
	db     *badger.DB
	closed *int
}

func (s outsideStore) Close() error {
	*s.closed++
	return s.db.Close()
}

// outsideOpener opens outsideStores under root, counting opens and closes
// and recording the configurations it was given.
type outsideOpener struct {
	root          string
	opens, closes int
	configs       []ledger.BlobsConfig
}

func (o *outsideOpener) open(_ context.Context, cfg ledger.BlobsConfig, logger *slog.Logger) (ledger.BlobStore, error) {
	o.configs = append(o.configs, cfg)
	host, ok := strings.CutPrefix(cfg.URL, "test://")
	if !ok {
		return nil, errors.New("not a test:// URL")
	}
	db, err := badger.Open(cas.DefaultBadgerOptions(filepath.Join(o.root, host), logger))
	if err != nil {
		return nil, err
	}
	b, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		db.Close()
		return nil, err
	}
	o.opens++
	return outsideStore{b, db, &o.closes}, nil
}

func TestBlobsOutsideDataDirectory(t *testing.T) {
	o := &outsideOpener{root: t.TempDir()}
	dir := filepath.Join(t.TempDir(), "d")
	cfg := ledger.BlobsConfig{URL: "test://bucket", Retention: "1y"}
	if _, err := ledger.InitWith(t.Context(), dir, "ledger.example.com/b", ledger.OpenOptions{Blobs: cfg, OpenBlobs: o.open}); err != nil {
		t.Fatal(err)
	}
	if o.opens == 0 || o.opens != o.closes {
		t.Errorf("init opened the blob store %d times and closed it %d times", o.opens, o.closes)
	}
	for _, c := range o.configs {
		if c != cfg {
			t.Errorf("the opener was given %+v, want %+v", c, cfg)
		}
	}
	marker, err := os.ReadFile(filepath.Join(dir, ledger.MarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"format":3,"origin":"ledger.example.com/b","blobs":{"url":"test://bucket","retention":"1y"}}` + "\n"; string(marker) != want {
		t.Errorf("marker = %s, want %s", marker, want)
	}

	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenBlobs: o.open})
	if err != nil {
		t.Fatal(err)
	}
	if l.BlobsURL != cfg.URL {
		t.Errorf("BlobsURL = %q, want %q", l.BlobsURL, cfg.URL)
	}
	info, err := l.Blobs.Put(t.Context(), strings.NewReader("kept outside"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Digest: info.Digest, Size: info.Size, Name: "x.txt", MediaType: "text/plain"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if ok, err := cas.NewBadger(l.DB, cas.BadgerOptions{}); err == nil {
		if has, _ := ok.Has(t.Context(), info.Digest); has {
			t.Errorf("the blob went into the data directory's badger store")
		}
	}
	rep, err := l.Audit(t.Context(), nil)
	if err != nil || rep.Blobs != 1 {
		t.Errorf("Audit = %+v, %v; want 1 blob verified", rep, err)
	}
	closesBefore := o.closes
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if o.closes != closesBefore+1 {
		t.Errorf("Close closed the blob store %d times, want once", o.closes-closesBefore)
	}

	for _, tt := range []struct {
		name string
		opts ledger.OpenOptions
		want string
	}{
		{"no opener", ledger.OpenOptions{}, "its blobs are at test://bucket, which this program cannot open"},
		{"another URL", ledger.OpenOptions{OpenBlobs: o.open, Blobs: ledger.BlobsConfig{URL: "test://other"}}, "this ledger's blobs are at test://bucket"},
		{"retention when opening", ledger.OpenOptions{OpenBlobs: o.open, Blobs: ledger.BlobsConfig{Retention: "2y"}}, "chosen when a ledger is made"},
		{"store fails", ledger.OpenOptions{OpenBlobs: func(context.Context, ledger.BlobsConfig, *slog.Logger) (ledger.BlobStore, error) {
			return nil, errors.New("bucket on fire")
		}}, "the blobs at test://bucket: bucket on fire"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ledger.Open(t.Context(), dir, tt.opts)
			if err == nil {
				l.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	// The same URL with a trailing slash is the same store.
	l, err = ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenBlobs: o.open, Blobs: ledger.BlobsConfig{URL: "test://bucket/"}})
	if err != nil {
		t.Fatalf("Open with the recorded URL and a slash: %v", err)
	}
	l.Close()
}

func TestInitBlobsRefused(t *testing.T) {
	o := &outsideOpener{root: t.TempDir()}
	for _, tt := range []struct {
		name string
		opts ledger.OpenOptions
		want string
	}{
		{"credentials in the URL", ledger.OpenOptions{Blobs: ledger.BlobsConfig{URL: "test://key:secret@bucket"}, OpenBlobs: o.open}, "credentials do not belong in it"},
		{"not a URL", ledger.OpenOptions{Blobs: ledger.BlobsConfig{URL: "bucket"}, OpenBlobs: o.open}, "want a URL such as s3://bucket/prefix"},
		{"no opener", ledger.OpenOptions{Blobs: ledger.BlobsConfig{URL: "test://bucket"}}, "this program does not open such a blob store"},
		{"store fails", ledger.OpenOptions{Blobs: ledger.BlobsConfig{URL: "other://bucket"}, OpenBlobs: o.open}, "the blobs at other://bucket: not a test:// URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			_, err := ledger.InitWith(t.Context(), dir, "ledger.example.com/b", tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
				t.Errorf("InitWith = %v, want an error saying %q (and no secret)", err, tt.want)
			}
			if _, serr := os.Stat(dir); serr == nil {
				t.Errorf("a refused init left %s behind", dir)
			}
		})
	}
}
