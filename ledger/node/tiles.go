package node

import (
	"compress/gzip"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/tracealm/evidence-ledger/ledger"
)

// The C2SP tlog-tiles read endpoints: /checkpoint, /tile/<L>/<N>[.p/<W>]
// and /tile/entries/<N>[.p/<W>], so that standard tile clients, monitors
// and witnesses can follow the log.

func (s *Server) tlogCheckpoint(w http.ResponseWriter, r *http.Request) error {
	cp, _ := s.opts.Log.Latest(r.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, err := w.Write(cp)
	return err
}

func (s *Server) tile(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/tile/")
	entries := false
	var level uint64
	if after, ok := strings.CutPrefix(rest, "entries/"); ok {
		entries, rest = true, after
	} else {
		l, after, ok := strings.Cut(rest, "/")
		var err error
		if level, err = strconv.ParseUint(l, 10, 8); !ok || err != nil || strconv.FormatUint(level, 10) != l {
			return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("malformed tile path %q: want /tile/<L>/<N>[.p/<W>]", r.URL.Path)}
		}
		rest = after
	}
	n, width, err := ParseTileIndex(rest)
	if err != nil {
		return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("malformed tile path %q: %v", r.URL.Path, err)}
	}
	var b []byte
	if entries {
		b, err = s.opts.Log.EntryBundle(r.Context(), n, width)
	} else {
		b, err = s.opts.Log.Tile(r.Context(), level, n, width)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if width == ledger.TileWidth {
		w.Header().Set("Cache-Control", s.cacheControl("max-age=31536000, immutable"))
	} else {
		w.Header().Set("Cache-Control", s.cacheControl("max-age=60"))
	}
	if entries {
		// Entry bundles are JSON text, and compress well; tiles of
		// hashes do not.
		w.Header().Set("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			if _, err := zw.Write(b); err != nil {
				return err
			}
			return zw.Close()
		}
	}
	_, err = w.Write(b)
	return err
}

// acceptsGzip reports whether r's Accept-Encoding lists gzip with a
// quality above zero.
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(h, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.ToLower(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// ParseTileIndex parses the <N>[.p/<W>] part of a tile path: N as
// zero-padded three-digit elements, all but the last prefixed with "x"
// (1234067 is x001/x234/067), and an optional partial width 1–255.
// It returns the width as 256 for a full tile.
func ParseTileIndex(p string) (n uint64, width int, err error) {
	width = ledger.TileWidth
	if base, w, ok := strings.Cut(p, ".p/"); ok {
		wn, err := strconv.Atoi(w)
		if err != nil || wn < 1 || wn >= ledger.TileWidth || strconv.Itoa(wn) != w {
			return 0, 0, fmt.Errorf("partial width %q must be 1 to 255", w)
		}
		width, p = wn, base
	}
	parts := strings.Split(p, "/")
	if len(parts) > 7 {
		return 0, 0, fmt.Errorf("index %q has too many elements", p)
	}
	for i, part := range parts {
		last := i == len(parts)-1
		if !last {
			var ok bool
			if part, ok = strings.CutPrefix(part, "x"); !ok {
				return 0, 0, fmt.Errorf("index element %q must start with x", parts[i])
			}
		}
		if len(part) != 3 || strings.Trim(part, "0123456789") != "" {
			return 0, 0, fmt.Errorf("index element %q is not three digits", parts[i])
		}
		d, _ := strconv.ParseUint(part, 10, 64)
		if i == 0 && d == 0 && len(parts) > 1 {
			return 0, 0, fmt.Errorf("index %q has a leading zero element", p)
		}
		if n > (math.MaxUint64-d)/1000 {
			return 0, 0, fmt.Errorf("index %q is beyond any tree", p)
		}
		n = n*1000 + d
	}
	return n, width, nil
}

// TilePath formats the <N>[.p/<W>] part of a tile path.
func TilePath(n uint64, width int) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n /= 1000; n > 0; n /= 1000 {
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	if width < ledger.TileWidth {
		s += ".p/" + strconv.Itoa(width)
	}
	return s
}
