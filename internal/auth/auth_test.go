package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/gcnserve/gcnserve/internal/gcnerr"
)

type counter struct {
	mu sync.Mutex
	n  map[Reason]int
}

func (c *counter) Unauthenticated(_ string, r Reason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[Reason]int{}
	}
	c.n[r]++
}

func (c *counter) get(r Reason) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[r]
}

// tokenFile writes content to a fresh token file.
func tokenFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t *testing.T, content string) (*Tokens, *counter, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	c := &counter{}
	tok, err := Load(tokenFile(t, content), slog.New(slog.NewTextHandler(&logs, nil)), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c, &logs
}

func TestParseTokenFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{"one", "s3cret\n", []string{"s3cret"}, ""},
		{"no final newline", "s3cret", []string{"s3cret"}, ""},
		{"comments and blanks", "# prod\n\n  tok-1  \n\t# old\ntok2\r\n", []string{"tok-1", "tok2"}, ""},
		{"empty", "", nil, ""},
		{"inner space", "two words\n", nil, "line 1: "},
		{"control char", "ok\nbad\x01\n", nil, "line 2: "},
		{"non-ASCII", "tökén\n", nil, "line 1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokenFile([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one starting %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "words") || strings.Contains(err.Error(), "bad") {
					t.Errorf("error %q shows the line's content", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseBearer(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer\tabc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"Bearer a b", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseBearer(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLoadRefusesNoTokens(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "comments only": "# nothing\n\n", "malformed": "a b\n"} {
		if _, err := Load(tokenFile(t, content), nil, nil); err == nil {
			t.Errorf("%s: Load succeeded, want an error (it would accept nobody or everybody)", name)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent"), nil, nil); err == nil || !strings.Contains(err.Error(), "--auth-token-file") {
		t.Errorf("absent file: %v, want an error naming --auth-token-file", err)
	}
}

func TestCheck(t *testing.T) {
	tok, c, logs := load(t, "# two tokens\nalpha-1\nbeta-2\n")
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"first token", []string{"Bearer alpha-1"}, ""},
		{"second token", []string{"bearer beta-2"}, ""},
		{"no header", nil, MsgMissing},
		{"empty header", []string{""}, MsgMissing},
		{"basic scheme", []string{"Basic alpha-1"}, MsgMissing},
		{"wrong token", []string{"Bearer alpha-2"}, MsgInvalid},
		{"prefix of a token", []string{"Bearer alpha"}, MsgInvalid},
		{"two headers", []string{"Bearer alpha-1", "Bearer beta-2"}, MsgInvalid},
	}
	for _, tt := range tests {
		err := tok.Check(ProtocolGRPC, tt.values)
		var e *gcnerr.Error
		if tt.want == "" && err != nil || tt.want != "" && (!errors.As(err, &e) || e.Kind != gcnerr.Unauthenticated || e.Msg != tt.want) {
			t.Errorf("%s: Check = %v, want %q", tt.name, err, tt.want)
		}
	}
	if c.get(ReasonMissing) != 3 || c.get(ReasonInvalid) != 3 {
		t.Errorf("counted %v, want 3 missing and 3 invalid", c.n)
	}
	if strings.Contains(logs.String(), "alpha") || strings.Contains(logs.String(), "beta") {
		t.Errorf("a token reached the log:\n%s", logs)
	}
}

func TestReloadOnChange(t *testing.T) {
	var logs bytes.Buffer
	path := tokenFile(t, "old\n")
	tok, err := Load(path, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(token string) bool { return tok.Check(ProtocolGRPC, []string{"Bearer " + token}) == nil }
	if !ok("old") {
		t.Fatal("old token refused")
	}
	// Replace by rename, as an atomic writer (and a Kubernetes secret) does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if ok("old") || !ok("new") {
		t.Errorf("after the rename: old accepted %v, new accepted %v; want false, true", ok("old"), ok("new"))
	}
	// An in-place rewrite of the same size is seen too (new mtime).
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, []byte("neu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok("new") || !ok("neu") {
		t.Errorf("after the rewrite: new accepted %v, neu accepted %v; want false, true", ok("new"), ok("neu"))
	}
	// A half-written (empty) or deleted file keeps the last good tokens.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !ok("neu") {
		t.Error("empty file: the last good token was dropped")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !ok("neu") {
		t.Error("deleted file: the last good token was dropped")
	}
	if err := os.WriteFile(path, []byte("back\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !ok("back") {
		t.Error("recreated file: its token refused")
	}
	for _, want := range []string{"auth tokens reloaded", "cannot be used", "unreadable"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "unreadable"); n != 1 {
		t.Errorf("the unreadable file was logged %d times, want once", n)
	}
}

func TestInterceptors(t *testing.T) {
	tok, _, _ := load(t, "s3cret\n")
	unary := tok.UnaryInterceptor()
	stream := tok.StreamInterceptor()
	withToken := func(v string) context.Context {
		if v == "" {
			return context.Background()
		}
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", v))
	}
	tests := []struct {
		method, header string
		want           codes.Code
		msg            string
	}{
		{"/GCNService/ProcessGraph", "Bearer s3cret", codes.OK, ""},
		{"/GCNService/ProcessGraph", "", codes.Unauthenticated, MsgMissing},
		{"/GCNService/ProcessGraph", "Bearer nope", codes.Unauthenticated, MsgInvalid},
		{"/inference.GRPCInferenceService/ModelInfer", "", codes.Unauthenticated, MsgMissing},
		{"/grpc.health.v1.Health/Check", "", codes.OK, ""},
		{"/grpc.health.v1.Health/Watch", "Bearer nope", codes.OK, ""},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", codes.OK, ""},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "", codes.OK, ""},
	}
	for _, tt := range tests {
		ctx := withToken(tt.header)
		called := false
		_, err := unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(context.Context, any) (any, error) {
			called = true
			return nil, nil
		})
		if got := status.Code(err); got != tt.want || called != (tt.want == codes.OK) || (tt.msg != "" && status.Convert(err).Message() != tt.msg) {
			t.Errorf("unary %s with %q: code %v (%v), handler called %v; want %v %q", tt.method, tt.header, got, err, called, tt.want, tt.msg)
		}
		called = false
		err = stream(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: tt.method}, func(any, grpc.ServerStream) error {
			called = true
			return nil
		})
		if got := status.Code(err); got != tt.want || called != (tt.want == codes.OK) {
			t.Errorf("stream %s with %q: code %v, handler called %v; want %v", tt.method, tt.header, got, called, tt.want)
		}
	}
}

func TestTapHandle(t *testing.T) {
	tok, _, _ := load(t, "s3cret\n")
	tapHandle := tok.TapHandle()
	for _, tt := range []struct {
		method string
		md     metadata.MD
		want   codes.Code
	}{
		{"/GCNService/ProcessGraph", metadata.Pairs("authorization", "Bearer s3cret"), codes.OK},
		{"/GCNService/ProcessGraph", metadata.MD{}, codes.Unauthenticated},
		{"/GCNService/GetModelInfo", metadata.Pairs("authorization", "Bearer s3cre"), codes.Unauthenticated},
		{"/grpc.health.v1.Health/Check", metadata.MD{}, codes.OK},
	} {
		_, err := tapHandle(context.Background(), &tap.Info{FullMethodName: tt.method, Header: tt.md})
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s %v: %v, want %v", tt.method, tt.md, err, tt.want)
		}
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

func TestMiddleware(t *testing.T) {
	tok, _, _ := load(t, "s3cret\n")
	h := tok.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	tests := []struct {
		path, header string
		want         int
		msg          string
	}{
		{"/v1/process-graph", "Bearer s3cret", 200, ""},
		{"/v1/process-graph", "", 401, MsgMissing},
		{"/v2/models/karate/infer", "Bearer wrong", 401, MsgInvalid},
		{"/metrics", "", 401, MsgMissing},
		{"/healthz", "", 200, ""},
		{"/readyz", "", 200, ""},
		{"/v2/health/live", "", 200, ""},
		{"/v2/health/ready", "", 200, ""},
		{"/v2/healthy", "", 401, MsgMissing},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", tt.path, nil)
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s with %q: status %d, want %d", tt.path, tt.header, rec.Code, tt.want)
			continue
		}
		if tt.want != 401 {
			continue
		}
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", tt.path, got)
		}
		var body struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != tt.msg {
			t.Errorf("%s: body %q (%v), want {\"error\": %q}", tt.path, rec.Body, err, tt.msg)
		}
	}
}

// TestCheckConcurrent runs checks while the file is rewritten (under -race).
func TestCheckConcurrent(t *testing.T) {
	path := tokenFile(t, "a\nb\n")
	tok, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if tok.Check(ProtocolGRPC, []string{"Bearer a"}) != nil {
					t.Error("token a refused; it is in every version of the file")
					return
				}
			}
		}()
	}
	for i := range 20 {
		tmp := path + ".tmp"
		os.WriteFile(tmp, []byte("a\n"+strings.Repeat("c", i+1)+"\n"), 0o600)
		os.Rename(tmp, path)
	}
	wg.Wait()
}
