package web_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger"
)

// chromium finds the browser, or skips the test when there is none and
// LEDGER_REQUIRE_BROWSER is not set (.ci/run sets it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LEDGER_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found, and LEDGER_REQUIRE_BROWSER is set: install it (apt-get install chromium)")
	}
	t.Skip("no Chromium found; install it (apt-get install chromium) to run the browser tests")
	return ""
}

// outputDir is where screenshots go: LEDGER_TEST_OUTPUT, else
// .test-output/browser at the repository root.
func outputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LEDGER_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join("..", "..", ".test-output", "browser")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts headless Chromium with a fresh profile and returns a
// tab's context. Background networking is off: the machine may have no
// network, and the browser's own requests would only slow it down.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// TestBrowser drives headless Chromium over the pages of a node holding
// the sample release: what they show, the in-browser check with the
// right and wrong keys, the audit package download, the error pages,
// writes refused, and hostile strings shown as text without running.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests are slow; skipped with -short")
	}
	f := newFixture(t)
	ctx := newBrowser(t)
	out := outputDir(t)

	// Any dialog (alert, confirm, prompt) would mean injected script ran:
	// count it and close it so that the page does not hang.
	var dialogs atomic.Int32
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}); err != nil {
		t.Fatal(err)
	}
	step := func(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatal(err)
		}
	}
	text := func(t *testing.T, sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	eval := func(t *testing.T, js string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluating %s: %v", js, err)
		}
		return s
	}
	screenshot := func(t *testing.T, name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(out, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// accessible lists what the page in the tab lacks of the markup the
	// pages promise: a language, one main landmark, a label for every
	// control, a scope for every header cell and alt text for images.
	accessible := func(t *testing.T) {
		t.Helper()
		problems := eval(t, `(() => {
			const p = [];
			if (!document.documentElement.lang) p.push('no lang attribute');
			if (document.querySelectorAll('main').length !== 1) p.push('not one main landmark');
			for (const c of document.querySelectorAll('input:not([type=hidden]), textarea, select')) if (c.labels.length === 0) p.push('no label for #' + c.id);
			for (const th of document.querySelectorAll('th')) if (!th.scope) p.push('th without scope: ' + th.textContent.trim());
			for (const img of document.querySelectorAll('img')) if (!img.alt) p.push('img without alt');
			return p.join('; ');
		})()`)
		if problems != "" {
			t.Errorf("accessibility: %s", problems)
		}
	}

	t.Run("home", func(t *testing.T) {
		step(t, chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.CSS("table.releases")))
		if got, want := text(t, "#tree-size"), strconv.FormatUint(f.l.Log.Size(), 10)+" entries"; got != want {
			t.Errorf("tree size shown %q, want %q", got, want)
		}
		if cp, _ := f.l.Log.Checkpoint(); text(t, "#checkpoint") != strings.TrimSpace(string(cp)) {
			t.Errorf("checkpoint shown %q, want %q", text(t, "#checkpoint"), cp)
		}
		rows := text(t, "table.releases tbody")
		if !strings.Contains(rows, "v0.1.0") || !strings.Contains(rows, "Jane Doe") {
			t.Errorf("release table %q lacks v0.1.0 by Jane Doe", rows)
		}
		accessible(t)
		screenshot(t, "home")
	})

	t.Run("release", func(t *testing.T) {
		step(t, chromedp.Navigate(f.url+"/"), chromedp.Click(chromedp.CSS(`a[href="/releases/v0.1.0"]`)), chromedp.WaitVisible(chromedp.CSS("#file-table")))
		if got := text(t, "#signer-name"); got != "Jane Doe" {
			t.Errorf("signer %q, want Jane Doe", got)
		}
		if got := text(t, "#bundle-digest"); got != f.bundle.String() {
			t.Errorf("bundle digest %q, want %s", got, f.bundle)
		}
		if got, want := text(t, "#meaning"), "approved-for-release"; got != want {
			t.Errorf("meaning %q, want %q", got, want)
		}
		if got, want := text(t, "#signed-at"), f.manifest.Predicate().SignedAt; got != want {
			t.Errorf("signed at %q, want %q", got, want)
		}
		if got, want := text(t, "#log-index"), strconv.FormatUint(f.receipt.Index, 10); got != want {
			t.Errorf("log index %q, want %q", got, want)
		}
		// A row per file, each with its digest and a download link named
		// after the file.
		if got, want := eval(t, `String(document.querySelectorAll('#file-table tbody tr').length)`), strconv.Itoa(len(f.listing.Files)); got != want {
			t.Errorf("%s file rows, want %s", got, want)
		}
		files := text(t, "#file-table tbody")
		for _, file := range f.listing.Files {
			if !strings.Contains(files, file.Path) || !strings.Contains(files, file.Digest.String()) {
				t.Errorf("file table lacks %s %s", file.Path, file.Digest)
			}
		}
		if got := eval(t, `document.querySelector('a[href="/v1/blobs/`+f.listing.Files[0].Digest.String()+`"]').getAttribute('download')`); got != filepath.Base(f.listing.Files[0].Path) {
			t.Errorf("download name %q, want %q", got, filepath.Base(f.listing.Files[0].Path))
		}
		trace := text(t, "#trace-table tbody")
		for _, uid := range regulatedUIDs(t) {
			if !strings.Contains(trace, uid) {
				t.Errorf("trace table lacks %s", uid)
			}
		}
		if !strings.Contains(trace, "https://git.example.com/dhf/pull/57") || !strings.Contains(trace, "0a1b2c3d4e5f") {
			t.Errorf("trace table lacks the stamps' PR and commit: %q", trace)
		}
		if got := text(t, "#command-package"); got != "ledger verify --audit-package release-v0.1.0-audit.zip --bundle PATH --log-key log.pub" {
			t.Errorf("offline command %q", got)
		}
		accessible(t)
		screenshot(t, "release")

		// Printed, the page keeps the record and drops the controls.
		media := func(m string) {
			t.Helper()
			if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: m}); err != nil {
				t.Fatalf("emulating media %q: %v", m, err)
			}
		}
		media("print")
		defer media("")
		if got := eval(t, `[...document.querySelectorAll('.browser-check, header.site form, #audit-package')].map(e => getComputedStyle(e).display).join(' ')`); got != "none none none" {
			t.Errorf("printed, the controls show: display %q", got)
		}
		if got := eval(t, `[...document.querySelectorAll('#signature-facts, #file-table, #trace-table, #command-package')].map(e => getComputedStyle(e).display).join(' ')`); strings.Contains(got, "none") {
			t.Errorf("printed, the record is hidden: display %q", got)
		}
		screenshot(t, "release-print")
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		pdf, err := chromedp.Call(sctx, page.PrintToPDF, page.PrintToPDFParams{})
		if err != nil {
			t.Fatalf("printing: %v", err)
		}
		if err := os.WriteFile(filepath.Join(out, "release.pdf"), pdf.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	// check pastes key into the release page's form and returns the
	// result's state and text.
	check := func(t *testing.T, key string) (string, string) {
		t.Helper()
		step(t, chromedp.SetValue(chromedp.CSS("#log-pub"), key), chromedp.Click(chromedp.CSS("#check-button")),
			chromedp.WaitVisible(chromedp.CSS(`#check-result[data-result="verified"], #check-result[data-result="failed"]`)))
		return eval(t, `document.getElementById('check-result').dataset.result`), text(t, "#check-result")
	}
	t.Run("check in the browser", func(t *testing.T) {
		step(t, chromedp.Navigate(f.url+"/releases/v0.1.0"), chromedp.WaitVisible(chromedp.CSS("#check-form")))
		state, msg := check(t, f.l.PublicKey)
		if state != "verified" || !strings.Contains(msg, "Verified in this browser") || !strings.Contains(msg, "entry "+strconv.FormatUint(f.receipt.Index, 10)) {
			t.Errorf("with the log's key: %s: %s", state, msg)
		}
		screenshot(t, "release-verified")

		// Another key under the same name: the signature is not its.
		_, other, err := note.GenerateKey(rand.Reader, f.l.Log.Origin())
		if err != nil {
			t.Fatal(err)
		}
		if state, msg := check(t, other); state != "failed" || !strings.Contains(msg, "NOT verified") || !strings.Contains(msg, "no signature by the key") {
			t.Errorf("with another key: %s: %s", state, msg)
		}
		screenshot(t, "release-not-verified")
		// The right key with its hash altered.
		name, rest, _ := strings.Cut(f.l.PublicKey, "+")
		hash, key, _ := strings.Cut(rest, "+")
		flipped := strconv.FormatUint((mustHex(t, hash)+1)&0xffffffff, 16)
		flipped = strings.Repeat("0", 8-len(flipped)) + flipped
		if state, msg := check(t, name+"+"+flipped+"+"+key); state != "failed" || !strings.Contains(msg, "key hash") {
			t.Errorf("with an altered key hash: %s: %s", state, msg)
		}
		if state, msg := check(t, "not a key"); state != "failed" || !strings.Contains(msg, "three fields") {
			t.Errorf("with garbage: %s: %s", state, msg)
		}

		// The page's data altered: a proof hash, then the version claimed.
		tamper := func(js string) {
			step(t, chromedp.Navigate(f.url+"/releases/v0.1.0"), chromedp.WaitVisible(chromedp.CSS("#check-form")))
			eval(t, `(() => { const b = document.getElementById('receipt-data'); const d = JSON.parse(b.textContent); `+js+`; b.textContent = JSON.stringify(d); return 'ok'; })()`)
		}
		tamper(`d.hashes[0] = btoa(String.fromCharCode(...new Uint8Array(32)))`)
		if state, msg := check(t, f.l.PublicKey); state != "failed" || !strings.Contains(msg, "does not lead to the signed root") {
			t.Errorf("with a proof hash altered: %s: %s", state, msg)
		}
		tamper(`d.version = 'v9.9.9'`)
		if state, msg := check(t, f.l.PublicKey); state != "failed" || !strings.Contains(msg, "not v9.9.9") {
			t.Errorf("with another version claimed: %s: %s", state, msg)
		}
		// An entry that is in the log but is not this release: entry 0's
		// receipt (a stamp), shown as the release's.
		other0, err := f.l.Log.Receipt(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		tamper(`d.entry = '` + b64(other0.Entry) + `'; d.entry_digest = '` + other0.EntryDigest + `'; d.index = 0; d.hashes = [` + b64List(other0.Inclusion.Hashes) + `]; d.tree_size = ` +
			strconv.FormatUint(other0.Inclusion.TreeSize, 10) + `; d.checkpoint = ` + strconv.Quote(other0.Checkpoint))
		if state, msg := check(t, f.l.PublicKey); state != "failed" || !strings.Contains(msg, "not a release") {
			t.Errorf("with another entry's receipt: %s: %s", state, msg)
		}
	})

	t.Run("audit package download", func(t *testing.T) {
		dir := t.TempDir()
		step(t, chromedp.Navigate(f.url+"/releases/v0.1.0"), chromedp.WaitVisible(chromedp.CSS("#audit-package")),
			chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
				_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
					Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: ptr(true)})
				return err
			}))
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		begin := chromedp.Events(dctx, browser.DownloadWillBegin)
		progress := chromedp.Events(dctx, browser.DownloadProgress)
		step(t, chromedp.Click(chromedp.CSS("#audit-package")))
		var suggested string
		for ev, err := range begin {
			if err != nil {
				t.Fatal(err)
			}
			suggested = ev.SuggestedFilename
			break
		}
		if suggested != "release-v0.1.0-audit.zip" {
			t.Errorf("download named %q, want release-v0.1.0-audit.zip", suggested)
		}
		var file string
		for ev, err := range progress {
			if err != nil {
				t.Fatal(err)
			}
			if ev.State == browser.DownloadProgressStateCanceled {
				t.Fatal("the download was canceled")
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				file = filepath.Join(dir, ev.GUID)
				break
			}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		checkPackage(t, f, b)
	})

	t.Run("entry", func(t *testing.T) {
		i := strconv.FormatUint(f.receipt.Index, 10)
		step(t, chromedp.Navigate(f.url+"/entries/"+i), chromedp.WaitVisible(chromedp.CSS("#entry-json")))
		if got := text(t, "#entry-kind"); got != "release" {
			t.Errorf("kind %q, want release", got)
		}
		if got := text(t, "#entry-digest"); got != f.receipt.EntryDigest {
			t.Errorf("entry digest %q, want %s", got, f.receipt.EntryDigest)
		}
		if !strings.Contains(text(t, "#entry-json"), `"version": "v0.1.0"`) {
			t.Errorf("entry JSON %q", text(t, "#entry-json"))
		}
		accessible(t)
		screenshot(t, "entry")
		step(t, chromedp.Click(chromedp.CSS(`a[href="/releases/v0.1.0"]`)), chromedp.WaitVisible(chromedp.CSS("#signer-name")))
	})

	t.Run("search", func(t *testing.T) {
		step(t, chromedp.Navigate(f.url+"/"), chromedp.SendKeys(chromedp.CSS("#site-q"), "REQ-001"),
			chromedp.Submit(chromedp.CSS("#site-q")), chromedp.WaitVisible(chromedp.CSS("#results-table")))
		want, err := f.l.Log.Search(t.Context(), ledger.Query{UID: "REQ-001"}, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := eval(t, `String(document.querySelectorAll('#results-table tbody tr').length)`); got != strconv.Itoa(len(want)) {
			t.Errorf("%s results for REQ-001, want %d", got, len(want))
		}
		accessible(t)
		screenshot(t, "search")
		step(t, chromedp.Navigate(f.url+"/search?q=sha256:nothex"), chromedp.WaitVisible(chromedp.CSS("#search-message")))
		if !strings.Contains(text(t, "#search-message"), "not a digest") {
			t.Errorf("bad digest message %q", text(t, "#search-message"))
		}
	})

	t.Run("not found", func(t *testing.T) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := chromedp.Run(sctx, chromedp.NavigateResponse(f.url+"/releases/v9.9.9"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 404 || text(t, "h1") != "404 Not Found" {
			t.Errorf("unknown release: %d %q", resp.Status, text(t, "h1"))
		}
		accessible(t)
		screenshot(t, "not-found")
	})

	t.Run("writes refused", func(t *testing.T) {
		step(t, chromedp.Navigate(f.url+"/releases/v0.1.0"), chromedp.WaitVisible(chromedp.CSS("#check-form")))
		size := f.l.Log.Size()
		for _, path := range []string{"/releases/v0.1.0", "/", "/entries/0", "/search?q=REQ-001"} {
			if got := eval(t, `fetch('`+path+`', {method: 'POST', body: 'x'}).then(r => String(r.status))`); got != "405" {
				t.Errorf("POST %s from the page = %s, want 405", path, got)
			}
		}
		if f.l.Log.Size() != size {
			t.Errorf("tree size went from %d to %d", size, f.l.Log.Size())
		}
	})

	t.Run("sign in on a token-gated node", func(t *testing.T) {
		step(t, chromedp.Navigate(f.gatedURL+"/releases/v0.1.0"), chromedp.WaitVisible(chromedp.CSS("#token")))
		accessible(t)
		screenshot(t, "signin")
		step(t, chromedp.SendKeys(chromedp.CSS("#token"), "elt_not-a-token"), chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS("#signin-message")))
		if got := text(t, "#signin-message"); !strings.Contains(got, "unknown token") {
			t.Errorf("a wrong token says %q", got)
		}
		step(t, chromedp.SendKeys(chromedp.CSS("#token"), f.auditor), chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS("#audit-package")))
		if got := text(t, ".signer-name"); got != "Jane Doe" {
			t.Errorf("signed in, the release page shows signer %q", got)
		}
		// The script reads nothing the cookie does not allow: it cannot
		// see the token, and a write from the page is refused.
		if got := eval(t, `document.cookie`); got != "" {
			t.Errorf("the page's script sees the cookie %q", got)
		}
		size := f.l.Log.Size()
		if got := eval(t, `fetch('/v1/entries', {method: 'POST', body: '{"kind":"artefact","subject":{}}'}).then(r => String(r.status))`); got != "401" {
			t.Errorf("a write from the signed-in page = %s, want 401", got)
		}
		if f.l.Log.Size() != size {
			t.Errorf("tree size went from %d to %d", size, f.l.Log.Size())
		}
		// Signing out returns to the home page, which asks for a token
		// again.
		step(t, chromedp.Navigate(f.gatedURL+"/signin"), chromedp.WaitVisible(chromedp.CSS("form.signout button")),
			chromedp.Click(chromedp.CSS("form.signout button")))
		deadline := time.Now().Add(10 * time.Second)
		for eval(t, `location.pathname + ' ' + document.readyState + ' ' + (document.querySelector('#token') !== null)`) != "/ complete true" {
			if time.Now().After(deadline) {
				t.Fatal("signing out did not return to the sign-in form on the home page")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("escaping", func(t *testing.T) {
		for _, path := range []string{"/releases/" + evilVersion, "/", "/entries/" + strconv.FormatUint(f.evilIndex, 10), "/search?kind=stamp", "/search?kind=signer"} {
			step(t, chromedp.Navigate(f.url+path), chromedp.WaitVisible(chromedp.CSS("main")))
			if got := eval(t, `String(window.__pwned)`); got != "undefined" {
				t.Errorf("%s: injected script ran: window.__pwned = %s", path, got)
			}
			if got := eval(t, `String(document.querySelectorAll('img, main script:not(#receipt-data), main b, main i, main a[href^="javascript"]').length)`); got != "0" {
				t.Errorf("%s: %s injected elements", path, got)
			}
		}
		step(t, chromedp.Navigate(f.url+"/releases/"+evilVersion), chromedp.WaitVisible(chromedp.CSS("#file-table")))
		if got := text(t, "#signer-name"); got != evilName {
			t.Errorf("signer shown as %q, want the literal %q", got, evilName)
		}
		if got := text(t, "#signer-email"); got != evilEmail {
			t.Errorf("email shown as %q, want the literal %q", got, evilEmail)
		}
		if files := text(t, "#file-table tbody"); !strings.Contains(files, evilFile) {
			t.Errorf("file table %q lacks the literal %q", files, evilFile)
		}
		if trace := text(t, "#trace-table tbody"); !strings.Contains(trace, evilUID) || !strings.Contains(trace, evilApprover) {
			t.Errorf("trace table %q lacks the literal UID and approver", trace)
		}
		screenshot(t, "escaping")
		if n := dialogs.Load(); n != 0 {
			t.Errorf("%d dialogs opened", n)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// b64List writes hashes as the items of a JavaScript array of base64 strings.
func b64List(hashes [][]byte) string {
	items := make([]string, len(hashes))
	for i, h := range hashes {
		items[i] = "'" + b64(h) + "'"
	}
	return strings.Join(items, ", ")
}

func mustHex(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
