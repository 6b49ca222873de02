package web

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/auditpkg"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

// AuditPackage answers a release's audit package as a zip attachment; the
// node serves it on a page and in the API.
// The package is small (proofs, keys, the manifest and the listing; no
// bundle files), so it is built in memory and sent whole: a failure is an
// error page, not a truncated zip.
func (p *Pages) AuditPackage(w http.ResponseWriter, r *http.Request) error {
	version := r.PathValue("version")
	if err := ledger.ValidateVersion(version); err != nil {
		return badRequest("%v", err)
	}
	if p.opts.PublicKey == "" {
		return notFound("this node was not given its log's public key, which an audit package must hold; ask its operator for one made with ledger audit-package")
	}
	src := auditpkg.Source{Log: p.opts.Log, Registry: p.opts.Registry, Blobs: p.opts.Blobs, PublicKey: p.opts.PublicKey}
	pkg, err := auditpkg.Gather(r.Context(), src, version)
	if errors.Is(err, release.ErrUnknownRelease) {
		return notFound("no release %s is recorded in this log", version)
	}
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := pkg.WriteZip(&b); err != nil {
		return err
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", `attachment; filename="`+pkg.FileName()+`"`)
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("Cache-Control", "no-store")
	_, err = w.Write(b.Bytes())
	return err
}
