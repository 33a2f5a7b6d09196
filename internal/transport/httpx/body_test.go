package httpx

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
)

// fakeRequest records what ReadBody asks of a serving request.
type fakeRequest struct {
	mu       sync.Mutex
	begun    int64   // Begin's wire bytes
	resizes  []int64 // SetWireBytes calls, in order
	closed   bool
	maxBytes int64 // SetWireBytes over this fails as the budget would (0: never)
}

func (r *fakeRequest) SetWireBytes(_ context.Context, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resizes = append(r.resizes, n)
	if r.maxBytes > 0 && n > r.maxBytes {
		return gcn.Errorf(gcn.KindOverloaded, "budget: %d bytes refused", n)
	}
	return nil
}

func (r *fakeRequest) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

func (r *fakeRequest) peak() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.begun
	for _, n := range r.resizes {
		p = max(p, n)
	}
	return p
}

// bodyServer serves ReadBody with limit; each request's fakeRequest goes
// to reqs, and the answer is the body read or the error's JSON.
func bodyServer(t *testing.T, limit int64, timeout time.Duration, budget int64) (*httptest.Server, chan *fakeRequest) {
	t.Helper()
	reqs := make(chan *fakeRequest, 16)
	log := slog.New(slog.DiscardHandler)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr := &fakeRequest{maxBytes: budget}
		reqs <- fr
		req, body, err := ReadBody(w, r, limit, func(_ context.Context, n int64) (*fakeRequest, error) {
			fr.mu.Lock()
			fr.begun = n
			fr.mu.Unlock()
			return fr, nil
		})
		if err != nil {
			WriteError(w, log, "test", err)
			return
		}
		defer req.Close()
		w.Write(body)
	})
	srv := httptest.NewServer(WithReadTimeout(h, timeout))
	t.Cleanup(srv.Close)
	return srv, reqs
}

func post(t *testing.T, url string, body io.Reader, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		var e ErrorBody
		if err := json.Unmarshal(out, &e); err != nil || e.Error == "" {
			t.Errorf("status %d body %q is not a JSON error", res.StatusCode, out)
		}
		return res.StatusCode, e.Error
	}
	return res.StatusCode, string(out)
}

func compress(t *testing.T, enc string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "raw-deflate":
		w, _ = flate.NewWriter(&b, flate.BestSpeed)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func TestReadBodyEncodings(t *testing.T) {
	srv, reqs := bodyServer(t, 1<<20, 0, 0)
	plain := []byte(strings.Repeat(`{"id":"n1","features":[0.5,1]}`, 1000))
	enc := func(v ...string) http.Header { return http.Header{"Content-Encoding": v} }
	cases := []struct {
		name   string
		body   []byte
		header http.Header
		code   int
		substr string // in the error, or the body when 200
	}{
		{"plain", plain, nil, 200, string(plain)},
		{"identity", plain, enc("identity"), 200, string(plain)},
		{"gzip", compress(t, "gzip", plain), enc("gzip"), 200, string(plain)},
		{"GZIP", compress(t, "gzip", plain), enc("GZIP"), 200, string(plain)},
		{"x-gzip", compress(t, "gzip", plain), enc("x-gzip"), 200, string(plain)},
		{"deflate (zlib)", compress(t, "deflate", plain), enc("deflate"), 200, string(plain)},
		{"identity, gzip", compress(t, "gzip", plain), enc("identity, gzip"), 200, string(plain)},
		{"plain labelled gzip", plain, enc("gzip"), 400, "labelled Content-Encoding: gzip but does not decode as gzip"},
		{"plain labelled deflate", plain, enc("deflate"), 400, "labelled Content-Encoding: deflate but does not decode as deflate"},
		{"raw deflate labelled deflate", compress(t, "raw-deflate", plain), enc("deflate"), 400, "does not decode as deflate"},
		{"gzip then garbage", append(compress(t, "gzip", plain), "junk"...), enc("gzip"), 400, "does not decode as gzip"},
		{"empty gzip", nil, enc("gzip"), 400, "does not decode as gzip"},
		{"br", plain, enc("br"), 415, `Content-Encoding "br" is not supported`},
		{"compress", plain, enc("compress"), 415, `Content-Encoding "compress" is not supported`},
		{"gzip twice", plain, enc("gzip", "gzip"), 415, "more than one coding"},
		{"long unknown", plain, enc(strings.Repeat("z", 5000)), 415, strings.Repeat("z", 64) + `..."`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got := post(t, srv.URL, bytes.NewReader(c.body), c.header)
			if code != c.code || !strings.Contains(got, c.substr) {
				t.Errorf("%d %.200q, want %d containing %.200q", code, got, c.code, c.substr)
			}
			if c.code == 415 {
				return // refused before admission
			}
			fr := <-reqs
			fr.mu.Lock()
			defer fr.mu.Unlock()
			if c.code != 200 && !fr.closed {
				t.Errorf("refused request's reservation not closed")
			}
		})
		if c.code == 415 {
			<-reqs
		}
	}
}

// TestReadBodyLimits: the limit holds on the wire and decoded, with and
// without Content-Length, and a gzip bomb is refused after reading no more
// than the limit (issue 16, defect 7).
func TestReadBodyLimits(t *testing.T) {
	const limit = 100 << 10
	srv, reqs := bodyServer(t, limit, 0, 0)
	bomb := compress(t, "gzip", make([]byte, 16<<20)) // 16 MiB of zeros: 16 KiB compressed
	if len(bomb) > limit {
		t.Fatalf("bomb is %d bytes compressed, want under the %d limit", len(bomb), limit)
	}
	exact := bytes.Repeat([]byte("a"), limit)
	cases := []struct {
		name   string
		body   io.Reader
		header http.Header
		code   int
		substr string
	}{
		{"exactly the limit", bytes.NewReader(exact), nil, 200, ""},
		{"one over, Content-Length", bytes.NewReader(append(exact, 'a')), nil, 413, "larger than 102400 bytes (--max-request-bytes)"},
		{"one over, chunked", io.MultiReader(bytes.NewReader(exact), strings.NewReader("a")), nil, 413, "larger than 102400 bytes (--max-request-bytes)"},
		{"gzip exactly the limit", bytes.NewReader(compress(t, "gzip", exact)), http.Header{"Content-Encoding": {"gzip"}}, 200, ""},
		{"gzip bomb", bytes.NewReader(bomb), http.Header{"Content-Encoding": {"gzip"}}, 413,
			"decompresses (Content-Encoding: gzip) to more than 102400 bytes (--max-request-bytes)"},
		{"deflate bomb", bytes.NewReader(compress(t, "deflate", make([]byte, 8<<20))), http.Header{"Content-Encoding": {"deflate"}}, 413,
			"decompresses (Content-Encoding: deflate) to more than 102400 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got := post(t, srv.URL, c.body, c.header)
			if code != c.code || !strings.Contains(got, c.substr) {
				t.Errorf("%d %.200q, want %d containing %q", code, got, c.code, c.substr)
			}
			if code == 200 && len(got) != limit {
				t.Errorf("body of %d bytes, want %d", len(got), limit)
			}
			if c.name == "one over, Content-Length" {
				return // refused before admission
			}
			fr := <-reqs
			if p := fr.peak(); p > limit {
				t.Errorf("reserved for %d wire bytes, more than the %d limit", p, limit)
			}
		})
		if c.name == "one over, Content-Length" {
			<-reqs
		}
	}
}

// TestReadBodyReservesAsBytesArrive: a client announcing a big body and
// sending 5 bytes holds a reservation for the first chunk only; the
// reservation grows with the body and ends at its exact size (issue 16,
// defect 2).
func TestReadBodyReservesAsBytesArrive(t *testing.T) {
	const limit = 64 << 20
	srv, reqs := bodyServer(t, limit, 0, 0)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\nhello")
	fr := <-reqs
	time.Sleep(50 * time.Millisecond)
	if p := fr.peak(); p != firstChunk {
		t.Errorf("stalled 60 MB body: reserved for %d wire bytes, want the first chunk (%d)", p, firstChunk)
	}
	conn.Close()

	body := bytes.Repeat([]byte("x"), 3<<20+5)
	if code, _ := post(t, srv.URL, bytes.NewReader(body), nil); code != 200 {
		t.Fatalf("3 MiB body: %d", code)
	}
	fr = <-reqs
	fr.mu.Lock()
	defer fr.mu.Unlock()
	want := []int64{128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20}
	got := fr.resizes
	if len(got) < 1 || got[len(got)-1] != int64(len(body)) {
		t.Fatalf("resizes %v: the last must be the body's exact size %d", got, len(body))
	}
	got = got[:len(got)-1]
	if len(got) != len(want) {
		t.Fatalf("resizes %v, want doublings %v then %d", fr.resizes, want, len(body))
	}
	for i := range want {
		if i == len(want)-1 {
			want[i] = int64(len(body)) // capped at Content-Length
		}
		if got[i] != want[i] {
			t.Errorf("resize %d = %d, want %d (all: %v)", i, got[i], want[i], fr.resizes)
		}
	}
}

// TestReadBodyTimeout: a body that stops arriving is cut off after the
// read timeout with 408 naming the flag, and its reservation is released
// (issue 16, defect 2).
func TestReadBodyTimeout(t *testing.T) {
	srv, reqs := bodyServer(t, 64<<20, 300*time.Millisecond, 0)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\nhello")
	fr := <-reqs
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	took := time.Since(start)
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(out), "--http-read-timeout") {
		t.Errorf("stalled body: %d %s, want 408 naming --http-read-timeout", res.StatusCode, out)
	}
	if took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("cut off after %v, want about the 300ms timeout", took)
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if !fr.closed {
		t.Error("stalled request's reservation not released")
	}
}

// TestReadBodyBudgetRefusal: a refused growth (the budget) is the
// budget's error, and the request is closed.
func TestReadBodyBudgetRefusal(t *testing.T) {
	srv, reqs := bodyServer(t, 64<<20, 0, 1<<20)
	code, msg := post(t, srv.URL, bytes.NewReader(make([]byte, 3<<20)), nil)
	if code != 429 || !strings.Contains(msg, "budget") {
		t.Errorf("%d %q, want 429 from the budget", code, msg)
	}
	fr := <-reqs
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if !fr.closed {
		t.Error("request not closed after the refusal")
	}
}

func TestReserveDecoded(t *testing.T) {
	fr := &fakeRequest{}
	if err := ReserveDecoded(context.Background(), fr, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if got := fr.resizes[0]; got != 334 {
		t.Errorf("1000 decoded bytes reserved as %d wire bytes, want 334 (DecodeBound(334) >= 1000)", got)
	}
	err := ReserveDecoded(context.Background(), fr, 2<<30, 1<<30)
	var e *gcn.Error
	if !errors.As(err, &e) || e.Kind != gcn.KindTooLarge || !strings.Contains(e.Msg, "--max-inflight-bytes") {
		t.Errorf("need over the budget: %v, want TooLarge naming --max-inflight-bytes", err)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, nil, "r", &StatusError{Code: 415, Msg: "no"})
	if rec.Code != 415 || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) || rec.Body.String() != "{\"error\":\"no\"}\n" {
		t.Errorf("got %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WriteJSON(rec, 200, func() {})
	if rec.Code != 500 || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("unencodable value: %d %q, want 500 and a JSON error", rec.Code, rec.Body.String())
	}
}
