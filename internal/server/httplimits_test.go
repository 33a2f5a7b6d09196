package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPLimitFlags: the HTTP limits are flags with environment twins,
// shown by --help with their defaults, range-checked.
func TestHTTPLimitFlags(t *testing.T) {
	env := map[string]string{"GCNSERVE_HTTP_IDLE_TIMEOUT": "7s", "GCNSERVE_MAX_HTTP_CONNS": "12"}
	cfg, err := ParseFlags([]string{"--model", "flags.go", "--http-read-timeout", "3s", "--http-max-header-bytes", "4096", "--http-read-header-timeout", "2s"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := HTTPLimits{ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, IdleTimeout: 7 * time.Second, MaxHeaderBytes: 4096, MaxConns: 12}
	if cfg.HTTP != want {
		t.Errorf("HTTP limits %+v, want %+v", cfg.HTTP, want)
	}
	srv := cfg.HTTP.server(":0", http.NotFoundHandler(), nil)
	if srv.ReadTimeout != 3*time.Second || srv.IdleTimeout != 7*time.Second || srv.MaxHeaderBytes != 4096 || srv.ReadHeaderTimeout != 2*time.Second {
		t.Errorf("http.Server %+v does not carry the limits", srv)
	}
	var help strings.Builder
	ParseFlags([]string{"--help"}, func(string) string { return "" }, &help)
	for _, w := range []string{
		`--http-read-timeout (env GCNSERVE_HTTP_READ_TIMEOUT, default "1m0s")`,
		`--http-idle-timeout (env GCNSERVE_HTTP_IDLE_TIMEOUT, default "2m0s")`,
		`--http-max-header-bytes (env GCNSERVE_HTTP_MAX_HEADER_BYTES, default "65536")`,
		`--http-read-header-timeout (env GCNSERVE_HTTP_READ_HEADER_TIMEOUT, default "10s")`,
		`--max-http-conns (env GCNSERVE_MAX_HTTP_CONNS, default "4096")`,
	} {
		if !strings.Contains(help.String(), w) {
			t.Errorf("--help lacks %q", w)
		}
	}
	for _, bad := range [][]string{{"--http-read-timeout", "-1s"}, {"--http-max-header-bytes", "10"}, {"--max-http-conns", "-1"}, {"--http-idle-timeout", "48h"}} {
		_, err := ParseFlags(append([]string{"--model", "flags.go"}, bad...), func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad[0]) || ExitCode(err) != ExitUsage {
			t.Errorf("%v: %v, want a usage error naming %s", bad, err, bad[0])
		}
	}
}

// TestLimitListener: with n connections open, the next waits for one to
// close; Close ends a waiting Accept.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitListener(inner, 2)
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not free a second slot
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	second.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.Close()
	select {
	case _, ok := <-accepted:
		for ok {
			_, ok = <-accepted
		}
	case <-ctx.Done():
		t.Fatal("Accept did not return after Close")
	}
}
