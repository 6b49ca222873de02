package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/client"
)

// TestUploadRidesThrough503: a file uploaded through the CLI's counting
// and progress readers is sent again after a node's 503 (a failover),
// whole, and counted once; a stream is sent once, the 503 its answer.
func TestUploadRidesThrough503(t *testing.T) {
	content := bytes.Repeat([]byte("evidence "), 100000)
	path := filepath.Join(t.TempDir(), "report.xml")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	unavailable, tries := 0, 0
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries++
		if unavailable > 0 {
			unavailable--
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"a failover"}}`)
			return
		}
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"digest":"`+cas.Sum(got).String()+`"}`)
	}))
	defer srv.Close()
	cl, err := client.New(srv.URL, "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	st := remoteStore{cl}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &progress{w: io.Discard, on: true, total: int64(len(content))}
	unavailable = 2
	d, n, err := st.PutBlob(t.Context(), p.reader(f), int64(len(content)), nil)
	if err != nil || d != cas.Sum(content) || n != int64(len(content)) || tries != 3 || !bytes.Equal(got, content) {
		t.Fatalf("a file through two 503s: %v, %v, counted %d of %d, %d tries, the node got %d bytes", d, err, n, len(content), tries, len(got))
	}
	unavailable, tries = 1, 0
	if _, _, err := st.PutBlob(t.Context(), io.MultiReader(bytes.NewReader(content)), int64(len(content)), nil); err == nil || tries != 1 {
		t.Errorf("a stream through a 503: %v after %d tries, want the 503 after one", err, tries)
	}
}
