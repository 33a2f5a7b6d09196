package hostilegrpc

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawConn is an HTTP/2 client connection written frame by frame, as an
// attacker writes one: it sends what a test says (headers, a message
// prefix, nothing more) and records how each stream ended.
type rawConn struct {
	t    testing.TB
	addr string
	c    net.Conn
	fr   *http2.Framer

	mu     sync.Mutex // guards everything below, and writes to fr
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	nextID uint32
	ends   map[uint32]chan streamEnd
	// maxStreams is the server's SETTINGS_MAX_CONCURRENT_STREAMS (0: not
	// advertised, unlimited).
	maxStreams uint32
	settings   chan struct{} // closed when the server's first SETTINGS arrived
}

// streamEnd is how a stream ended: with trailers (grpc-status) or a reset.
type streamEnd struct {
	status  int // grpc-status; -1 after a reset or a lost connection
	message string
	reset   http2.ErrCode
	at      time.Time
}

// dialRaw opens a plaintext HTTP/2 connection to addr and starts reading
// its frames; it is closed when the test ends.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawConn{t: t, addr: addr, c: c, nextID: 1, ends: map[uint32]chan streamEnd{}, settings: make(chan struct{})}
	r.enc = hpack.NewEncoder(&r.encBuf)
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 64 << 20
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	err = r.fr.WriteSettings()
	if err == nil {
		// Let the server's answers flow whatever their size.
		err = r.fr.WriteWindowUpdate(0, 1<<30)
	}
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.readLoop() }()
	t.Cleanup(func() { c.Close(); <-done })
	select {
	case <-r.settings:
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the server")
	}
	return r
}

func (r *rawConn) readLoop() {
	settingsSeen := false
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.mu.Lock()
			for id := range r.ends {
				r.finishLocked(id, streamEnd{status: -1, message: "connection: " + err.Error(), at: time.Now()})
			}
			r.mu.Unlock()
			if !settingsSeen {
				close(r.settings)
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			r.mu.Lock()
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				r.maxStreams = v
			}
			r.fr.WriteSettingsAck()
			r.mu.Unlock()
			if !settingsSeen {
				settingsSeen = true
				close(r.settings)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.mu.Lock()
				r.fr.WritePing(true, f.Data)
				r.mu.Unlock()
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				r.mu.Lock()
				r.fr.WriteWindowUpdate(f.StreamID, uint32(n))
				r.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if !f.StreamEnded() {
				continue
			}
			end := streamEnd{status: -1, at: time.Now()}
			for _, hf := range f.Fields {
				switch hf.Name {
				case "grpc-status":
					end.status, _ = strconv.Atoi(hf.Value)
				case "grpc-message":
					end.message = hf.Value
				}
			}
			r.finish(f.StreamID, end)
		case *http2.RSTStreamFrame:
			r.finish(f.StreamID, streamEnd{status: -1, reset: f.ErrCode, at: time.Now()})
		}
	}
}

// finish records how stream id ended (the first end counts).
func (r *rawConn) finish(id uint32, end streamEnd) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked(id, end)
}

func (r *rawConn) finishLocked(id uint32, end streamEnd) {
	if ch, ok := r.ends[id]; ok {
		select {
		case ch <- end:
		default: // ended already
		}
	}
}

// open starts a gRPC call to path: HEADERS without END_STREAM. headers are
// added (e.g. grpc-encoding, authorization).
func (r *rawConn) open(path string, headers ...string) uint32 {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextID
	r.nextID += 2
	r.ends[id] = make(chan streamEnd, 1)
	r.encBuf.Reset()
	fields := append([]string{
		":method", "POST", ":scheme", "http", ":path", path, ":authority", r.addr,
		"content-type", "application/grpc", "te", "trailers",
	}, headers...)
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.encBuf.Bytes(), EndHeaders: true}); err != nil {
		r.t.Fatalf("HEADERS: %v", err)
	}
	return id
}

// send writes p on stream id in DATA frames of at most 16 KiB, the last
// one with END_STREAM when end is set. It does not wait for flow-control
// window: tests send less than the initial windows.
func (r *rawConn) send(id uint32, p []byte, end bool) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		n := min(len(p), 16<<10)
		last := n == len(p)
		if err := r.fr.WriteData(id, end && last, p[:n]); err != nil {
			r.t.Fatalf("DATA: %v", err)
		}
		p = p[n:]
		if last {
			return
		}
	}
}

// wait returns how stream id ended, or ok false if it is still open after
// within.
func (r *rawConn) wait(id uint32, within time.Duration) (streamEnd, bool) {
	r.mu.Lock()
	ch := r.ends[id]
	r.mu.Unlock()
	if ch == nil {
		return streamEnd{status: -1, message: "stream never opened"}, true
	}
	select {
	case end := <-ch:
		return end, true
	case <-time.After(within):
		return streamEnd{}, false
	}
}

// grpcFrame is a gRPC message: the 5-byte prefix (compressed flag, length)
// and the message.
func grpcFrame(msg []byte, compressed bool) []byte {
	out := make([]byte, 5, 5+len(msg))
	if compressed {
		out[0] = 1
	}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}
