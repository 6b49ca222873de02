package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/ledger/web"
	"github.com/tracealm/evidence-ledger/proofs"
)

// apiError is an error with its HTTP status and a stable code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

// toAPIError maps an error to its status: the one place this is decided.
func toAPIError(err error) *apiError {
	var ae *apiError
	var mb *http.MaxBytesError
	var se *web.StatusError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &se): // a refusal by a handler shared with the pages
		code := map[int]string{http.StatusBadRequest: "bad_request", http.StatusNotFound: "not_found"}[se.Status]
		if code == "" {
			code = strings.ToLower(strings.ReplaceAll(http.StatusText(se.Status), " ", "_"))
		}
		return &apiError{se.Status, code, se.Message}
	case errors.As(err, &mb):
		return &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is over this node's limit of %d bytes", mb.Limit)}
	case errors.Is(err, ledger.ErrTokenChecksBusy):
		return &apiError{http.StatusServiceUnavailable, "unavailable", tokenChecksBusyMessage}
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, ledger.ErrFailed):
		// Ahead of the request's own faults: a connection to the database
		// lost mid-read can also say unexpected EOF or deadline exceeded.
		// The details (which name the database) go to the node's log.
		return &apiError{http.StatusServiceUnavailable, "unavailable", unavailableMessage}
	case errors.Is(err, cas.ErrUnavailable):
		return &apiError{http.StatusServiceUnavailable, "unavailable", blobsUnavailableMessage}
	case errors.Is(err, cas.ErrCorrupt):
		return &apiError{http.StatusInternalServerError, "corrupt", err.Error() + ": this node's copy is damaged; its operator should run ledger audit"}
	case errors.Is(err, cas.ErrInvalidDigest), errors.Is(err, ledger.ErrInvalidEntry), errors.Is(err, proofs.ErrInvalidProof):
		return &apiError{http.StatusBadRequest, "bad_request", err.Error()}
	case errors.Is(err, cas.ErrDigestMismatch):
		return &apiError{http.StatusBadRequest, "digest_mismatch", err.Error() + "; nothing was stored"}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &apiError{http.StatusRequestTimeout, "timeout", "the request stalled past this node's timeout; nothing was stored"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{http.StatusBadRequest, "truncated", err.Error() + "; nothing was stored"}
	case errors.Is(err, release.ErrKeyBound), errors.Is(err, release.ErrRevoked), errors.Is(err, release.ErrExpired), errors.Is(err, release.ErrVersionTaken):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, release.ErrNotEnrolled), errors.Is(err, release.ErrUnknownRelease):
		return &apiError{http.StatusNotFound, "not_found", err.Error()}
	case errors.Is(err, signing.ErrInvalidKey), errors.Is(err, signing.ErrInvalidManifest), errors.Is(err, release.ErrDuplicateUID),
		errors.Is(err, signing.ErrWrongBundle), errors.Is(err, signing.ErrBadSignature), errors.Is(err, evidence.ErrInvalidBundle), errors.Is(err, evidence.ErrInvalidListing):
		return &apiError{http.StatusBadRequest, "bad_request", err.Error()}
	case errors.Is(err, cas.ErrNotFound), errors.Is(err, ledger.ErrNotFound):
		// The status says "not found"; the log's sentinel, a bare "not
		// found" at the end of the message, would say it twice.
		msg := strings.TrimSuffix(err.Error(), ": "+ledger.ErrNotFound.Error())
		return &apiError{http.StatusNotFound, "not_found", msg}
	case errors.Is(err, ledger.ErrMissingBlob):
		return &apiError{http.StatusConflict, "missing_blob", err.Error()}
	case errors.Is(err, ledger.ErrConflict):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, ledger.ErrNotSequencer):
		return &apiError{http.StatusServiceUnavailable, "not_sequencer", "this replica serves reads only; send writes to the replica whose /healthz says \"role\": \"sequencer\" (nothing was stored here)"}
	case errors.Is(err, ledger.ErrClosed):
		return &apiError{http.StatusServiceUnavailable, "unavailable", err.Error()}
	}
	return &apiError{http.StatusInternalServerError, "internal", "internal error; the node's log has the details"}
}

// unavailableMessage answers a request the log's storage could not serve:
// its database is down or restarting, or a write failed and the log has
// not yet resumed.
// tokenChecksBusyMessage answers a request whose token was not looked up
// because too many tokens the replica has not seen are being looked up.
const tokenChecksBusyMessage = "this replica is looking up too many tokens it has not seen just now (made-up ones, by the look of it); retry shortly"

const unavailableMessage = "the log's storage is not answering just now; retry shortly " +
	"(appends are idempotent, so retrying one that may have been recorded is safe); the node's log has the details"

// blobsUnavailableMessage answers a request the blob store (an object
// store) could not serve.
const blobsUnavailableMessage = "the blob store is not answering just now; retry shortly " +
	"(nothing was stored; a blob upload or an append retried later is recorded once); the node's log has the details"

// retryAfter is the Retry-After, in seconds, of an "unavailable" answer:
// a log whose commit failed tries to resume about once a second.
const retryAfter = "2"

func writeError(w http.ResponseWriter, err error) {
	ae := toAPIError(err)
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="evidence-ledger"`)
	}
	if ae.code == "unavailable" {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

// writeJSON writes v as JSON. HTML escaping is off: entries are embedded
// as raw JSON and must reach the client byte for byte (an approver such as
// "Jane Doe <jane@example.com>" would otherwise come back as \u003c...).
// writeReceipt answers a receipt, encoded without reflection (every append
// answers one).
func writeReceipt(w http.ResponseWriter, status int, rc proofs.Receipt) error {
	b := append(rc.AppendJSON(make([]byte, 0, 2048)), '\n')
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, err := w.Write(b)
	return err
}

var jsonContentType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(b.Bytes())
	return err
}
