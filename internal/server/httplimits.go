package server

import (
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPLimits bound what HTTP clients can hold: time to send a request,
// idle keep-alive connections, header size, open connections. Each
// field's comment states its default (DefaultHTTPLimits) and its flag.
type HTTPLimits struct {
	// ReadHeaderTimeout is the longest a client may take to send a
	// request's headers. Default 10s (--http-read-header-timeout).
	ReadHeaderTimeout time.Duration
	// ReadTimeout is the longest a client may take to send a whole
	// request; a request body gets it again from its admission (the wait
	// for memory does not count), so a 64 MiB body needs 1.1 MB/s at the
	// default. A body still arriving then is cut off with 408 and its
	// memory is released. Default 1m (--http-read-timeout).
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has waited this long
	// for its next request. Default 2m (--http-idle-timeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (431 past it). Default
	// 64 KiB (--http-max-header-bytes).
	MaxHeaderBytes int
	// MaxConns bounds the open connections of each HTTP listener; more
	// wait in the kernel's accept queue until one closes. Default 4096
	// (--max-http-conns); 0: unlimited. The process needs a file
	// descriptor per connection: keep `ulimit -n` above --max-http-conns
	// plus the gRPC clients plus 100.
	MaxConns int
}

// DefaultHTTPLimits returns HTTPLimits' documented defaults.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          4096,
	}
}

// server is an http.Server for h on addr with these limits.
func (l HTTPLimits) server(addr string, h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// limitListener accepts at most n connections at once (n <= 0: no limit);
// Accept waits while n are open, leaving new ones in the kernel's queue.
func limitListener(l net.Listener, n int) net.Listener {
	if n <= 0 {
		return l
	}
	return &limitedListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	done      chan struct{} // closed by Close: a waiting Accept returns
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
