package postgres

import (
	"slices"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TestTermRows checks the grouping of a batch's terms into ledger_terms
// rows: one per distinct term, in the order first met, with its entries'
// indexes ascending and the last of them, a term repeated within an
// entry counted once.
func TestTermRows(t *testing.T) {
	kind := ledger.Term{Field: "kind", Value: "artefact"}
	a := ledger.Term{Field: "digest", Value: "sha256:aa"}
	b := ledger.Term{Field: "digest", Value: "sha256:bb"}
	odd := ledger.Term{Field: "release", Value: `v1.0.0,{"}`}
	fields, values, lasts, idxs := termRows(40, [][]ledger.Term{
		{kind, a, a},
		{kind, b, odd},
		nil,
		{b, kind, b, odd},
	})
	if want := []string{"kind", "digest", "digest", "release"}; !slices.Equal(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
	if want := []string{"artefact", "sha256:aa", "sha256:bb", `v1.0.0,{"}`}; !slices.Equal(values, want) {
		t.Errorf("values %q, want %q", values, want)
	}
	if want := []int64{43, 40, 43, 43}; !slices.Equal(lasts, want) {
		t.Errorf("lasts %v, want %v", lasts, want)
	}
	if want := []string{"{40,41,43}", "{40}", "{41,43}", "{41,43}"}; !slices.Equal(idxs, want) {
		t.Errorf("indexes %q, want %q", idxs, want)
	}
	if f, v, l, i := termRows(7, [][]ledger.Term{nil, {}}); len(f)+len(v)+len(l)+len(i) != 0 {
		t.Errorf("a batch without terms gave rows %q %q %v %q", f, v, l, i)
	}
}
