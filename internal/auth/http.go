package auth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// ExemptPath reports whether an HTTP path is served without a token: the
// health endpoints that orchestrators probe.
func ExemptPath(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/v2/health" ||
		strings.HasPrefix(path, "/v2/health/")
}

// Middleware refuses HTTP requests without an accepted token with 401,
// a WWW-Authenticate: Bearer challenge (RFC 6750) and a JSON body
// {"error": "..."} as the Open Inference Protocol's REST errors have.
func (t *Tokens) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ExemptPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		reason := t.check(ProtocolHTTP, r.Header.Values("Authorization"))
		if reason == "" {
			next.ServeHTTP(w, r)
			return
		}
		challenge := `Bearer realm="gcnserve"`
		if reason == ReasonInvalid {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"error": reason.message()})
	})
}
