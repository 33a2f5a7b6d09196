// Package auth guards the server with shared bearer tokens read from a
// file: every gRPC call and HTTP request must carry
// "authorization: Bearer <token>" with one of the file's tokens, except
// health checks and server reflection, which load balancers and tools call
// without credentials.
//
// The file is re-read when it changes (checked with a stat on each request,
// which also follows a Kubernetes secret's symlink swap), so tokens rotate
// without a restart. Tokens are compared in constant time, as SHA-256
// digests so that every comparison has the same length, and never logged.
// Over plaintext a token crosses the network in the clear: use TLS
// (--tls-cert) wherever the network is not trusted.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

// The messages a client gets; their gRPC code is UNAUTHENTICATED, their
// HTTP status 401.
const (
	MsgMissing = "missing bearer token"
	MsgInvalid = "invalid bearer token"
)

// Reason says why a request was refused, as a metric label value.
type Reason string

// The reasons for a refusal.
const (
	ReasonMissing Reason = "missing"
	ReasonInvalid Reason = "invalid"
)

// The protocols a refusal is counted under.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Observer counts refusals (internal/metrics implements it as
// AuthFailed(protocol, reason)).
type Observer interface {
	Unauthenticated(protocol string, reason Reason)
}

// message is the client's message for a refusal.
func (r Reason) message() string {
	if r == ReasonMissing {
		return MsgMissing
	}
	return MsgInvalid
}

// Tokens is the set of accepted tokens, kept in step with its file. It is
// safe for concurrent use.
type Tokens struct {
	path string
	log  *slog.Logger
	obs  Observer

	mu sync.Mutex
	// digests are the SHA-256 sums of the accepted tokens; guarded by mu.
	digests [][sha256.Size]byte
	// stamp identifies the file version digests came from, and failed one
	// that could not be used (so it is reported once); guarded by mu.
	stamp, failed fileStamp
}

// fileStamp is what a stat says about a file version.
type fileStamp struct {
	modTime time.Time
	size    int64
	ino     uint64
}

// Load reads the token file. It fails when the file cannot be read, has a
// malformed line, or holds no token: a server started with
// --auth-token-file must not accept everyone. log and obs may be nil.
func Load(path string, log *slog.Logger, obs Observer) (*Tokens, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tokens{path: path, log: log, obs: obs}
	st, err := stat(path)
	if err != nil {
		return nil, fmt.Errorf("--auth-token-file: %w", err)
	}
	n, err := t.reload(st)
	if err != nil {
		return nil, fmt.Errorf("--auth-token-file %s: %w", path, err)
	}
	log.Info("auth tokens loaded", "file", path, "tokens", n)
	return t, nil
}

func stat(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	st.ino = inode(fi)
	return st, nil
}

// reload reads the file; t.mu is held or t is not shared yet.
func (t *Tokens) reload(st fileStamp) (int, error) {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return 0, err
	}
	tokens, err := ParseTokenFile(data)
	if err != nil {
		return 0, err
	}
	if len(tokens) == 0 {
		return 0, errors.New("no token in the file (one per line; # starts a comment)")
	}
	digests := make([][sha256.Size]byte, len(tokens))
	for i, tok := range tokens {
		digests[i] = sha256.Sum256([]byte(tok))
	}
	t.digests, t.stamp = digests, st
	return len(tokens), nil
}

// unreadable is the failed stamp of a file that cannot be stat'ed.
var unreadable = fileStamp{size: -1}

// refresh re-reads the file if it changed since the last look. A version
// that cannot be used (unreadable, malformed, empty: a writer caught
// half-way) keeps the previous tokens and is logged once.
func (t *Tokens) refresh() [][sha256.Size]byte {
	st, statErr := stat(t.path)
	t.mu.Lock()
	defer t.mu.Unlock()
	if statErr != nil {
		if t.failed == unreadable {
			return t.digests
		}
		t.failed = unreadable
		t.log.Error("auth token file unreadable; keeping the previous tokens", "file", t.path, "err", statErr)
		return t.digests
	}
	if st == t.stamp || st == t.failed {
		return t.digests
	}
	n, err := t.reload(st)
	if err != nil {
		t.failed = st
		t.log.Error("auth token file changed but cannot be used; keeping the previous tokens", "file", t.path, "err", err)
		return t.digests
	}
	t.failed = fileStamp{}
	t.log.Info("auth tokens reloaded", "file", t.path, "tokens", n)
	return t.digests
}

// Check accepts a request whose authorization header values are values
// (gRPC metadata or HTTP headers), or returns a gcn.Error of kind
// Unauthenticated with MsgMissing or MsgInvalid. Every refusal is counted.
// protocol is ProtocolGRPC or ProtocolHTTP, for the count.
func (t *Tokens) Check(protocol string, values []string) error {
	if reason := t.check(protocol, values); reason != "" {
		return gcnerr.New(gcnerr.Unauthenticated, "%s", reason.message())
	}
	return nil
}

// check returns why values are refused, or "" when they are accepted.
func (t *Tokens) check(protocol string, values []string) Reason {
	reason := t.verify(values)
	if reason != "" && t.obs != nil {
		t.obs.Unauthenticated(protocol, reason)
	}
	return reason
}

func (t *Tokens) verify(values []string) Reason {
	if len(values) == 0 {
		return ReasonMissing
	}
	if len(values) > 1 {
		// Two credentials are ambiguous; a proxy may have added one.
		return ReasonInvalid
	}
	tok, ok := ParseBearer(values[0])
	if !ok {
		return ReasonMissing
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	// Every digest is compared, so the time taken says nothing about which
	// token, if any, matched.
	for _, d := range t.refresh() {
		match |= subtle.ConstantTimeCompare(sum[:], d[:])
	}
	if match != 1 {
		return ReasonInvalid
	}
	return ""
}

// ParseBearer returns the token of an authorization header value
// "Bearer <token>" (scheme case-insensitive, RFC 7235), or false when the
// value is not a bearer credential or has an empty token.
func ParseBearer(value string) (token string, ok bool) {
	const scheme = "bearer"
	if len(value) <= len(scheme) || !strings.EqualFold(value[:len(scheme)], scheme) {
		return "", false
	}
	rest := value[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "Bearerabc" is not the Bearer scheme
	}
	token = strings.Trim(rest, " \t")
	if token == "" || !validToken(token) {
		return "", false
	}
	return token, true
}

// ParseTokenFile returns the tokens in a token file: one per line, leading
// and trailing blanks trimmed, blank lines and lines starting with # ignored.
// A token holds printable ASCII without spaces (which covers RFC 6750's
// token68); an error names the line but never shows its content.
func ParseTokenFile(data []byte) ([]string, error) {
	var tokens []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.Trim(sc.Text(), " \t\r")
		if s == "" || s[0] == '#' {
			continue
		}
		if !validToken(s) {
			return nil, fmt.Errorf("line %d: a token is printable ASCII without spaces", line)
		}
		tokens = append(tokens, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return tokens, nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
