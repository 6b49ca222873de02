package auditpkg

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

//go:embed report.html.tmpl
var reportText string

var reportPage = template.Must(template.New("report").Parse(reportText))

// WriteReport renders the audit report of a verification of the package:
// one self-contained HTML document (inline CSS, no script, nothing
// fetched) with the outcome, the signature's name, time and meaning, each
// check, the stamps, the files and the log, that prints to PDF as it
// reads on screen. Every string from the package is escaped.
func (p *Package) WriteReport(w io.Writer, rep release.Report, logKey note.Verifier, now time.Time) error {
	var files []evidence.File
	if l, err := evidence.ParseListing(p.Listing); err == nil {
		files = l.Files
	}
	stamps, err := p.StampEntries()
	note := ""
	if err != nil {
		note = "The package's stamps could not be read: " + err.Error()
	} else if len(stamps) == 0 {
		note = "The release names no stamps: it was signed without the release gate."
	}
	key := ""
	if logKey != nil {
		key = fmt.Sprintf("%s+%08x", logKey.Name(), logKey.KeyHash())
	}
	return reportPage.Execute(w, map[string]any{
		"Version":     p.Meta.Version,
		"Origin":      p.Meta.Origin,
		"Generated":   now.UTC().Format(time.RFC3339),
		"Report":      rep,
		"Stamps":      stamps,
		"StampsNote":  note,
		"Files":       files,
		"LogKey":      key,
		"Checkpoint":  string(p.Checkpoint),
		"PackageName": p.FileName(),
	})
}
