package evidence

import (
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
)

func TestDiff(t *testing.T) {
	f := func(path, content string) File { return File{Path: path, Size: -1, Digest: cas.Sum([]byte(content))} }
	signed := Listing{Files: []File{f("SHA256SUMS", "s"), f("app.exe", "a"), f("docs/rtm.html", "r")}}
	for _, c := range []struct {
		name string
		got  Listing
		want []string
	}{
		{"the same", signed, nil},
		{"one changed, one added, one missing", Listing{Files: []File{f("SHA256SUMS", "s"), f("app.exe", "b"), f("extra.txt", "e")}},
			[]string{"app.exe was changed", "docs/rtm.html is missing", "extra.txt was added"}},
		// tar czf b.tgz bundle: every file under bundle/.
		{"archived with its folder", Listing{Files: []File{f("bundle/SHA256SUMS", "s"), f("bundle/app.exe", "a"), f("bundle/docs/rtm.html", "r")}},
			[]string{"every file of the bundle is under the folder bundle/, which the signed listing does not have: archive the folder's contents (tar -C bundle -czf BUNDLE.tar.gz .) or give the folder itself; without it, the files match the signed listing"}},
		{"archived with its folder, and changed", Listing{Files: []File{f("bundle/SHA256SUMS", "s"), f("bundle/app.exe", "x"), f("bundle/docs/rtm.html", "r")}},
			[]string{"every file of the bundle is under the folder bundle/", "SHA256SUMS is missing", "bundle/SHA256SUMS was added"}},
	} {
		got := Diff(signed, c.got)
		if len(got) < len(c.want) || (c.want == nil) != (got == nil) {
			t.Errorf("%s: Diff = %q, want lines starting %q", c.name, got, c.want)
			continue
		}
		for i, w := range c.want {
			if i < len(got) && !strings.HasPrefix(got[i], w) && !containsPrefix(got, w) {
				t.Errorf("%s: Diff = %q, want a line starting %q", c.name, got, w)
			}
		}
	}
	// A signed listing that itself lives under one folder gets no hint.
	inFolder := Listing{Files: []File{f("rel/a", "a"), f("rel/b", "b")}}
	if got := Diff(inFolder, Listing{Files: []File{f("rel/a", "a"), f("rel/b", "c")}}); len(got) != 1 || !strings.HasPrefix(got[0], "rel/b was changed") {
		t.Errorf("Diff within a signed folder = %q", got)
	}
}

func containsPrefix(lines []string, p string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}
