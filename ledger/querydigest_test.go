package ledger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

func TestParseQueryDigest(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	if got, err := ledger.ParseQueryDigest("sha256:" + hex); err != nil || got != "sha256:"+hex {
		t.Errorf("a digest: %q, %v", got, err)
	}
	if _, err := ledger.ParseQueryDigest(hex); !errors.Is(err, ledger.ErrBareHex) || !strings.Contains(err.Error(), hex) {
		t.Errorf("64 bare hex digits: %v, want ErrBareHex naming them", err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + hex[:63], "sha512:" + hex, hex[:63], hex + "00", "SHA256:" + hex + "x"} {
		if got, err := ledger.ParseQueryDigest(bad); err == nil || errors.Is(err, ledger.ErrBareHex) {
			t.Errorf("ParseQueryDigest(%q) = %q, %v; want an error other than ErrBareHex", bad, got, err)
		}
	}
}
