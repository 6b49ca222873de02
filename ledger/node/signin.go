package node

import (
	"errors"
	"net/http"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/web"
)

// signInForm shows the form that keeps a token in TokenCookie, so that a
// browser can read the pages of a node whose reads need a token.
func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) error {
	s.pages.SignIn(w, r, http.StatusOK, "", r.URL.Query().Get("next"))
	return nil
}

// signIn checks the token posted by the form and, when it is live, sets
// TokenCookie for the browser session and returns to the page asked for.
// The cookie authorises reads only (see authenticate), so a form posted
// from another site can at most sign a browser in with a token of its own.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		return &web.StatusError{Status: http.StatusBadRequest, Message: "the sign-in form could not be read: " + err.Error()}
	}
	next := web.LocalPath(r.PostForm.Get("next"))
	secret := r.PostForm.Get("token")
	tok, err := s.opts.Tokens.Authenticate(r.Context(), secret)
	switch {
	case errors.Is(err, ledger.ErrUnknownToken), secret == "":
		s.pages.SignIn(w, r, http.StatusUnauthorized, "unknown token: check it was copied whole", next)
		return nil
	case errors.Is(err, ledger.ErrTokenRevoked):
		s.pages.SignIn(w, r, http.StatusUnauthorized, "this token was revoked; ask an admin for a new one", next)
		return nil
	case err != nil:
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: secret, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("signed in to the pages", "token", tok.Name, "addr", clientAddr(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// signOut forgets the browser's token.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}
