package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ledger test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// TestServeTLSAndShutdown runs ledger serve with TLS, reads from it over
// HTTPS, and stops it the way SIGTERM does (its context ends).
func TestServeTLSAndShutdown(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "d")
	if code := run(t.Context(), []string{"ledger", "init", "--data", dir, "--origin", "tls.example/dhf"}, nil, io.Discard, io.Discard); code != 0 {
		t.Fatal("init failed")
	}
	cert, key, pool := selfSigned(t, work)
	ctx, stop := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"ledger", "serve", "--data", dir, "--listen", "127.0.0.1:0", "--public-reads", "--tls-cert", cert, "--tls-key", key}, nil, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.Contains(line, "https://127.0.0.1:") {
		t.Fatalf("serve printed %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(line[strings.Index(line, "https://"):])
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"origin":"tls.example/dhf"`) {
		t.Errorf("healthz over TLS: %d %s", resp.StatusCode, b)
	}
	if resp, err := http.Get(strings.Replace(url, "https", "http", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS node: %d, want 400", resp.StatusCode)
		}
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after shutdown", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if code := run(t.Context(), []string{"ledger", "audit", "--data", dir}, nil, io.Discard, io.Discard); code != 0 {
		t.Error("audit after shutdown failed")
	}
}

// TestServeFlagErrors checks that serve refuses flags it cannot use with
// a usage error, before it serves anything.
func TestServeFlagErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	must(t, "", "init", "--data", dir, "--origin", "flags.example/dhf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--advertise-url", "ftp://replica.example"}, "--advertise-url"},
		{[]string{"--advertise-url", "replica.example:8080"}, "--advertise-url"},
		{[]string{"--advertise-url", "http://replica.example\x7f:8080"}, "--advertise-url"},
		{[]string{"--publish-interval", "5s"}, "--publish-interval goes with --publish-to"},
	} {
		fails(t, 2, []string{tc.want}, "", append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...)...)
	}
}

// While a replica opens its ledger again, /healthz keeps its usual shape
// (status and role), and other requests get the API's error.
func TestReopeningAnswers(t *testing.T) {
	var g *generation
	for path, want := range map[string]string{"/healthz": `"status":"reopening","role":"none"`, "/v1/entries/0": `"code":"unavailable"`} {
		w := httptest.NewRecorder()
		g.serve(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), want) || !json.Valid(w.Body.Bytes()) {
			t.Errorf("GET %s while reopening: %d %s, want 503 with %s", path, w.Code, w.Body, want)
		}
	}
}
