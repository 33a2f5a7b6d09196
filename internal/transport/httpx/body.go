package httpx

import (
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gcnserve/gcnserve/gcn"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// Admitted is the part of an admitted serving request that the prologue
// drives (serving.Request and oip.Request have it): SetWireBytes grows or
// shrinks the memory reservation to what n bytes of body need
// (serving.DecodeBound(n)), waiting for memory when it grows; Close gives
// everything back.
type Admitted interface {
	SetWireBytes(ctx context.Context, n int64) error
	Close()
}

// firstChunk is the body size a request reserves memory for when it is
// admitted; the reservation then doubles as the body arrives (never past
// Content-Length or the limit). A client that announces 60 MB and sends 5
// bytes holds DecodeBound(64 KiB) of the budget, not DecodeBound(60 MB):
// stalled big bodies cannot keep small requests waiting.
const firstChunk = 64 << 10

// ReadBody is the prologue of every HTTP request with a body. In order:
//
//   - a Content-Length over limit is refused (413) before anything else;
//   - Content-Encoding is checked: identity, gzip (x-gzip) and deflate
//     (zlib, RFC 9110) are decoded; anything else is refused (415);
//   - begin admits the request for the first chunk of its body
//     (min(64 KiB, Content-Length, limit) bytes of wire size);
//   - the body's read deadline is set to now + the timeout WithReadTimeout
//     put in the request's context (the admission wait does not count);
//   - the body is read, decoded, with the reservation grown as it arrives
//     (SetWireBytes before each doubling of the buffer); more than limit
//     bytes, on the wire or decoded, is 413 naming --max-request-bytes; a
//     body labelled gzip or deflate that is not is 400 naming the encoding;
//     a body not received in time is 408 naming --http-read-timeout;
//   - the reservation is set to the decoded body's exact size.
//
// On success the caller owns req (and Closes it); on error ReadBody has
// closed it, and the error is ready for WriteError. limit <= 0 means no
// limit.
func ReadBody[R Admitted](w http.ResponseWriter, r *http.Request, limit int64,
	begin func(ctx context.Context, wireBytes int64) (R, error)) (req R, body []byte, err error) {
	ctx := r.Context()
	if limit <= 0 {
		limit = math.MaxInt64
	}
	if r.ContentLength > limit {
		return req, nil, tooLarge(limit)
	}
	enc, err := parseEncoding(r.Header.Values("Content-Encoding"))
	if err != nil {
		return req, nil, err
	}
	// The decoded body is at most limit bytes, and without an encoding at
	// most Content-Length.
	bound := limit
	if enc == "" && r.ContentLength >= 0 {
		bound = r.ContentLength
	}
	req, err = begin(ctx, min(firstChunk, bound))
	if err != nil {
		return req, nil, err
	}
	defer func() {
		if err != nil {
			req.Close()
		}
	}()
	timeout := readTimeout(ctx)
	if timeout > 0 {
		// Counted from admission: a request that waited for memory still
		// gets the whole timeout for its body. Not every ResponseWriter
		// supports deadlines (httptest's does not); the server's
		// ReadTimeout still holds then.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc {
	case "gzip":
		zr, zerr := gzip.NewReader(src)
		if zerr != nil {
			return req, nil, encodingError(ctx, "gzip", limit, timeout, zerr)
		}
		defer zr.Close()
		src = zr
	case "deflate":
		zr, zerr := zlib.NewReader(src)
		if zerr != nil {
			return req, nil, encodingError(ctx, "deflate", limit, timeout, zerr)
		}
		defer zr.Close()
		src = zr
	}
	body, err = readGrowing(ctx, req, src, bound, limit)
	if err != nil {
		if enc != "" {
			return req, nil, encodingError(ctx, enc, limit, timeout, err)
		}
		return req, nil, readError(ctx, limit, timeout, err)
	}
	if err := req.SetWireBytes(ctx, int64(len(body))); err != nil {
		return req, nil, err
	}
	return req, body, nil
}

// errDecodedTooLarge is readGrowing's answer to a decoded body over the
// limit.
var errDecodedTooLarge = errors.New("decoded body over the limit")

// readGrowing reads src to its end into a buffer that doubles from
// firstChunk up to bound, growing req's reservation before each growth.
// More than limit bytes is errDecodedTooLarge.
func readGrowing(ctx context.Context, req Admitted, src io.Reader, bound, limit int64) ([]byte, error) {
	buf := make([]byte, 0, min(firstChunk, max(bound, 1)))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= bound {
				// Full at the bound: one more byte is over the limit (or,
				// without an encoding, over Content-Length, which the
				// HTTP server itself refuses to read past).
				var one [1]byte
				n, err := io.ReadFull(src, one[:])
				if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
					return buf, nil
				}
				if err != nil && n == 0 {
					return nil, err
				}
				return nil, errDecodedTooLarge
			}
			next := min(2*int64(cap(buf)), bound)
			if err := req.SetWireBytes(ctx, next); err != nil {
				return nil, err
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// parseEncoding returns the one content coding of a body ("" for none or
// identity), or a 415 naming what the server does not decode.
func parseEncoding(values []string) (string, error) {
	enc := ""
	for _, v := range values {
		for c := range strings.SplitSeq(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			switch c {
			case "", "identity":
				continue
			case "gzip", "x-gzip":
				c = "gzip"
			case "deflate":
			default:
				return "", &StatusError{Code: http.StatusUnsupportedMediaType,
					Msg: fmt.Sprintf("Content-Encoding %q is not supported: send the body plain, gzip or deflate", quoteShort(c))}
			}
			if enc != "" {
				return "", &StatusError{Code: http.StatusUnsupportedMediaType,
					Msg: fmt.Sprintf("Content-Encoding %q: more than one coding is not supported: send the body plain, gzip or deflate", quoteShort(strings.Join(values, ", ")))}
			}
			enc = c
		}
	}
	return enc, nil
}

// quoteShort is s cut to 64 bytes: a header value is echoed, not copied
// whole.
func quoteShort(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func tooLarge(limit int64) error {
	return gcn.Errorf(gcn.KindTooLarge, "request body is larger than %d bytes (--max-request-bytes)", limit)
}

// encodingError explains a failure while decoding a gzip or deflate body:
// the limits and the deadline first, else the body is not what its label
// says (400 naming the encoding).
func encodingError(ctx context.Context, enc string, limit int64, timeout time.Duration, err error) error {
	if errors.Is(err, errDecodedTooLarge) {
		return gcn.Errorf(gcn.KindTooLarge, "request body decompresses (Content-Encoding: %s) to more than %d bytes (--max-request-bytes)", enc, limit)
	}
	if isReadFailure(ctx, err) {
		return readError(ctx, limit, timeout, err)
	}
	return gcn.Errorf(gcn.KindInvalidArgument, "request body is labelled Content-Encoding: %s but does not decode as %s: %v", enc, enc, err)
}

// isReadFailure tells a failure to read the body (limit, deadline, client
// gone) from a body that does not decode.
func isReadFailure(ctx context.Context, err error) bool {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// readError explains a failure to read the body.
func readError(ctx context.Context, limit int64, timeout time.Duration, err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok || errors.Is(err, errDecodedTooLarge) {
		return tooLarge(limit)
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return &StatusError{Code: http.StatusRequestTimeout,
			Msg: fmt.Sprintf("request body not received within %s of admission (--http-read-timeout)", timeout)}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, ok := errors.AsType[*gcn.Error](err); ok {
		return err // the reservation's refusal (budget)
	}
	return gcn.Errorf(gcn.KindInvalidArgument, "reading the request body: %v", err)
}

type readTimeoutKey struct{}

// WithReadTimeout makes ReadBody give each request's body d from its
// admission to arrive (0: no deadline but the server's). The server wraps
// its HTTP handler with it, from --http-read-timeout.
func WithReadTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), readTimeoutKey{}, d)))
	})
}

func readTimeout(ctx context.Context) time.Duration {
	d, _ := ctx.Value(readTimeoutKey{}).(time.Duration)
	return d
}

// ReserveDecoded grows req's reservation to cover need bytes, the bound on
// what the body becomes once decoded (JSONCounts' GraphBytes and
// RESTInferBytes, oip's count of a ModelInfer message), refusing (413) a
// request whose need is more than the whole budget (0: no budget). The
// reservation is expressed to SetWireBytes as the wire size whose
// serving.DecodeBound covers need.
func ReserveDecoded(ctx context.Context, req Admitted, need, budget int64) error {
	if budget > 0 && need > budget {
		return gcn.Errorf(gcn.KindTooLarge, "request needs about %.1f MiB of memory once decoded, more than the whole --max-inflight-bytes budget (%.1f MiB): it can never be admitted; send a smaller request (gRPC or binary tensor data cost less than JSON) or raise --max-inflight-bytes",
			float64(need)/(1<<20), float64(budget)/(1<<20))
	}
	per := serving.DecodeBound(1)
	return req.SetWireBytes(ctx, (need+per-1)/per)
}
