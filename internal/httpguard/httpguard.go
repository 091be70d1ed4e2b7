// Package httpguard keeps mailchaos' unauthenticated local HTTP APIs (the
// toxiproxy API of `mailchaos proxy serve`, the embedded stack's metrics and
// admin endpoint) out of reach of web pages open in a browser on the same
// machine.
//
// [Wrap] refuses, before the wrapped handler sees the request:
//   - a Host header that is neither the listen address nor a loopback name
//     (localhost, 127.0.0.1, [::1]) with the server's port: DNS rebinding
//     (403);
//   - an Origin header that is not the server's own origin, and
//     Sec-Fetch-Site values other than same-origin and none: cross-site
//     requests (403);
//   - when a token is configured, a request without
//     "Authorization: Bearer TOKEN" (401);
//   - a write (POST, PUT, PATCH, DELETE) without
//     "Content-Type: application/json", the one type a cross-origin form or
//     simple fetch cannot send (415).
//
// Refusals are one-line JSON bodies: {"error": "httpguard: ..."}.
package httpguard

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// TokenEnv is the environment variable that holds the bearer token: the
// servers use it when no token file is given, and mailchaos' clients send it.
const TokenEnv = "MAILCHAOS_TOKEN"

// maxTokenFile bounds a token file.
const maxTokenFile = 4096

// Config says what a guarded server accepts.
type Config struct {
	// Listen is the address the server was told to listen on. Its host is
	// accepted in Host and Origin besides the loopback names and the
	// connection's local IP; the port must be the connection's local port
	// (Listen's port when the request carries no local address).
	Listen string
	// Token, when not empty, must be sent as "Authorization: Bearer Token".
	Token string
}

// Wrap returns next behind the guard. The returned handler is safe for
// concurrent use.
func Wrap(next http.Handler, cfg Config) http.Handler {
	g := &guard{next: next, token: []byte(cfg.Token)}
	if host, port, err := net.SplitHostPort(cfg.Listen); err == nil {
		g.listenHost = strings.ToLower(strings.Trim(host, "[]"))
		g.listenPort = port
	}
	return g
}

type guard struct {
	next       http.Handler
	token      []byte
	listenHost string
	listenPort string
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	localIP, port := g.local(r)
	if r.Host == "" {
		refuse(w, http.StatusForbidden, "the request has no Host header")
		return
	}
	if !g.allowed(r.Host, "80", localIP, port) {
		refuse(w, http.StatusForbidden, fmt.Sprintf("Host %q is not this server (use 127.0.0.1:%s or localhost:%s)", r.Host, port, port))
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !g.sameOrigin(o, localIP, port) {
		refuse(w, http.StatusForbidden, fmt.Sprintf("cross-origin request from %q refused", o))
		return
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		refuse(w, http.StatusForbidden, fmt.Sprintf("%s request refused (Sec-Fetch-Site)", s))
		return
	}
	if len(g.token) > 0 && !g.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailchaos"`)
		refuse(w, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
		return
	}
	if isWrite(r.Method) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			refuse(w, http.StatusUnsupportedMediaType, r.Method+" needs Content-Type: application/json")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// local returns the IP and port the request came in on, from the
// connection, or the listen address's port when unknown.
func (g *guard) local(r *http.Request) (ip net.IP, port string) {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, p, err := net.SplitHostPort(a.String()); err == nil {
			return net.ParseIP(host), p
		}
	}
	return nil, g.listenPort
}

// allowed reports whether hostport (defaultPort when it has none) names this
// server: a loopback name, the listen host or the connection's local IP
// (an IP literal cannot be rebound), on the server's port.
func (g *guard) allowed(hostport, defaultPort string, localIP net.IP, port string) bool {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		host, p = hostport, defaultPort
	}
	if p != port {
		return false
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "" {
		return false
	}
	if IsLoopback(host) {
		return true
	}
	if g.listenHost != "" && host == g.listenHost && !isUnspecified(host) {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && localIP != nil && ip.Equal(localIP) && !ip.IsUnspecified()
}

// sameOrigin reports whether the Origin header value is this server's own
// origin (http, as the servers speak plain HTTP).
func (g *guard) sameOrigin(origin string, localIP net.IP, port string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	return g.allowed(u.Host, "80", localIP, port)
}

func (g *guard) authorized(h string) bool {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), g.token) == 1
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// refuse writes a one-line JSON error.
func refuse(w http.ResponseWriter, code int, reason string) {
	Error(w, code, "httpguard: "+reason)
}

// Error answers with code and a one-line JSON body {"error": msg}, the shape
// both toxiproxy's and mailchaos' clients read.
func Error(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": msg, "status": code})
}

// IsLoopback reports whether host (a name or an IP, with or without
// brackets) is this machine's loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SetAuth adds "Authorization: Bearer token" to req when token is not
// empty.
func SetAuth(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// EnvToken returns the token in $MAILCHAOS_TOKEN (trimmed) as getenv reads
// it; empty means none.
func EnvToken(getenv func(string) string) string {
	return strings.TrimSpace(getenv(TokenEnv))
}

// LoadToken reads a token file: its content, trimmed of surrounding white
// space. The file must not be readable or writable by others (chmod 600 or
// 640) and must not be empty.
func LoadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o006 != 0 {
		return "", fmt.Errorf("token file %s: mode %s lets others read or write it; chmod o-rw %s", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("token file %s: more than %d bytes, too long for a token", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s: empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s: the token must be one word (no spaces or line breaks)", path)
	}
	return tok, nil
}

// NoRedirects is an http.Client CheckRedirect that follows no redirect: a
// client of mailchaos' sends its token and its writes to the address that
// passed the loopback guard, and to no other.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
