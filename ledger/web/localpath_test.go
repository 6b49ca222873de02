package web

import (
	"net/url"
	"strings"
	"testing"
)

func TestLocalPath(t *testing.T) {
	for _, tc := range []struct{ next, want string }{
		{"/", "/"},
		{"/search?q=REQ-001", "/search?q=REQ-001"},
		{"/releases/v1.0.0#files", "/releases/v1.0.0#files"},
		{"", "/"},
		{"search", "/"},
		{"https://evil.example/", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example/x", "/"},
		{"/\t/evil.example/x", "/"}, // browsers drop the tab: //evil.example/x
		{"/\n/evil.example/x", "/"},
		{"/\r\n/evil.example/x", "/"},
		{"/x\x00", "/"},
		{"/x\x7f", "/"},
		{"/x\u0085", "/"},
		{"/a\\b", "/"},
	} {
		if got := LocalPath(tc.next); got != tc.want {
			t.Errorf("LocalPath(%q) = %q, want %q", tc.next, got, tc.want)
		}
	}
}

// FuzzLocalPath checks that whatever LocalPath lets through stays on the
// node even after a browser's clean-up: with tabs and newlines removed and
// backslashes read as slashes, it is a path starting with exactly one "/",
// with no scheme and no host.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/search?q=x", "//evil.example", "/\t/evil.example", "/\\evil", "https://x/", "/%2F%2Fevil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := LocalPath(next)
		if got != "/" && got != next {
			t.Fatalf("LocalPath(%q) = %q: neither the path nor /", next, got)
		}
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		u, err := url.Parse(browser)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(browser, "/") || strings.HasPrefix(browser, "//") {
			t.Fatalf("LocalPath(%q) = %q, which a browser reads as %q: off the node", next, got, browser)
		}
	})
}
