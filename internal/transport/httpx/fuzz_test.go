package httpx

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/gcnserve/gcnserve/gcn"
)

const fuzzLimit = 4096

// reference decodes body as enc ("" plain) the obvious way, reading at
// most limit+1 bytes of output; ok is false when it does not decode.
func reference(body []byte, enc string) (out []byte, ok bool) {
	var r io.Reader = bytes.NewReader(body)
	var err error
	switch enc {
	case "gzip":
		if r, err = gzip.NewReader(r); err != nil {
			return nil, false
		}
	case "deflate":
		if r, err = zlib.NewReader(r); err != nil {
			return nil, false
		}
	}
	out, err = io.ReadAll(io.LimitReader(r, fuzzLimit+1))
	return out, err == nil
}

// FuzzReadBody feeds arbitrary bodies, Content-Encoding values and
// Content-Length values to the request prologue: it never panics, never
// returns more than the limit, returns exactly what a reference decoder
// gives when it accepts, refuses only with a *gcn.Error or *StatusError
// that says why, and always closes what it refused.
func FuzzReadBody(f *testing.F) {
	gz := func(b []byte) []byte {
		var w bytes.Buffer
		z := gzip.NewWriter(&w)
		z.Write(b)
		z.Close()
		return w.Bytes()
	}
	zl := func(b []byte) []byte {
		var w bytes.Buffer
		z := zlib.NewWriter(&w)
		z.Write(b)
		z.Close()
		return w.Bytes()
	}
	f.Add([]byte(`{"nodes":[]}`), "", int64(-1))
	f.Add(gz([]byte(`{"nodes":[]}`)), "gzip", int64(-1))
	f.Add(zl([]byte(`{"nodes":[]}`)), "deflate", int64(-1))
	f.Add(gz(make([]byte, 1<<16)), "gzip", int64(-1))
	f.Add([]byte(`{"nodes":[]}`), "gzip", int64(-1))
	f.Add([]byte("abc"), "br", int64(3))
	f.Add([]byte("abc"), "identity, gzip", int64(3))
	f.Fuzz(func(t *testing.T, body []byte, enc string, contentLength int64) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Encoding", enc)
		// Content-Length is the body's own length, unknown (-1), or a
		// declared length over the limit.
		switch {
		case contentLength < 0:
			r.ContentLength = -1
		case contentLength > fuzzLimit:
			r.ContentLength = contentLength
		default:
			r.ContentLength = int64(len(body))
		}
		fr := &fakeRequest{}
		req, got, err := ReadBody(httptest.NewRecorder(), r, fuzzLimit, func(_ context.Context, n int64) (*fakeRequest, error) {
			fr.begun = n
			return fr, nil
		})
		if err != nil {
			var ge *gcn.Error
			var se *StatusError
			if !(errors.As(err, &ge) && ge.Msg != "") && !(errors.As(err, &se) && se.Msg != "") {
				t.Fatalf("error %v (%T) is neither a gcn.Error nor a StatusError with a message", err, err)
			}
			if fr.begun != 0 && !fr.closed {
				t.Fatal("refused request not closed")
			}
			return
		}
		if req != fr {
			t.Fatal("ReadBody returned another request")
		}
		if len(got) > fuzzLimit {
			t.Fatalf("%d bytes returned, limit %d", len(got), fuzzLimit)
		}
		coding, perr := parseEncoding([]string{enc})
		if perr != nil {
			t.Fatalf("accepted encoding %q that parseEncoding refuses: %v", enc, perr)
		}
		want, ok := reference(body, coding)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("Content-Encoding %q: got %d bytes, reference %d bytes (ok %v)", enc, len(got), len(want), ok)
		}
		if last := fr.resizes[len(fr.resizes)-1]; last != int64(len(got)) {
			t.Fatalf("final reservation for %d bytes, body is %d", last, len(got))
		}
	})
}

// FuzzCountJSON: on valid JSON, CountJSON's counts are exactly the
// tokens encoding/json reads; on any bytes it never panics and its bounds
// grow with the text.
func FuzzCountJSON(f *testing.F) {
	for _, s := range []string{`{"nodes":[{"id":"a","features":[1,2.5e3,-0]}]}`, `[[],{},"\"\\u00e9",true,false,null]`, `{"a":`, `"unterminated`, `1 2 3`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := CountJSON(data)
		if c.Bytes != int64(len(data)) || c.Objects+c.Arrays+c.Strings+c.Scalars > c.Bytes || c.StringBytes > c.Bytes {
			t.Fatalf("counts %+v exceed the %d bytes", c, len(data))
		}
		if c.GraphBytes() < c.Bytes || c.RESTInferBytes() < c.Bytes {
			t.Fatalf("bounds %d, %d below the body's %d bytes", c.GraphBytes(), c.RESTInferBytes(), c.Bytes)
		}
		if !json.Valid(data) {
			return
		}
		var want JSONCounts
		want.Bytes = int64(len(data))
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{':
					want.Objects++
				case '[':
					want.Arrays++
				}
			case string:
				want.Strings++
			default:
				want.Scalars++
			}
		}
		if c.Objects != want.Objects || c.Arrays != want.Arrays || c.Strings != want.Strings || c.Scalars != want.Scalars {
			t.Fatalf("CountJSON(%s) = %+v, encoding/json reads %+v", strconv.Quote(string(data)), c, want)
		}
	})
}
