package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/keepalive"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// DefaultMaxMessageBytes is the default limit on the size of one request the
// client sends and of one response it accepts: 64 MiB, the server's default
// --max-request-bytes. README's "Go packages" section gives the largest graph
// each limit allows.
const DefaultMaxMessageBytes = 64 << 20

// DefaultKeepalive is the default keepalive policy: after 30 s without any
// traffic on a connection with a call in flight, ping the server, and close
// the connection (failing the call with UNAVAILABLE) when no answer comes
// within 10 s. Idle connections send no pings. A server limits how often it
// accepts pings while it sends nothing (grpc-go's default: once per 5
// minutes, closing the connection after 3 faster ones), so against such a
// server a call silent for more than about 90 s loses its connection.
// gcnserve accepts a ping every 10 s, idle or not.
var DefaultKeepalive = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}

// DefaultServiceConfig is the gRPC service config Dial applies unless
// WithServiceConfig replaces it, the one README's "Scaling out" tests against
// three replicas (without its waitForReady and timeout, which are the
// caller's to choose per call):
//
//   - loadBalancingConfig round_robin: one connection to every address the
//     target resolves to, calls spread over them in turn (grpc-go's default,
//     pick_first, sends everything to the first address);
//   - healthCheckConfig: each connection watches the server's
//     grpc.health.v1 status for "" (gcnserve: its default model is served),
//     and a server that turns NOT_SERVING (draining after SIGTERM) gets no
//     new calls; servers without the health service count as healthy. It is
//     "" even with WithModel: watching "gcnserve.model.<name>" would turn a
//     misspelt model name into UNAVAILABLE instead of the server's NOT_FOUND
//     listing what it serves;
//   - a retry policy for every GCNService method: a call that fails with
//     UNAVAILABLE is tried up to 5 times in all, waiting a random time of up
//     to 0.02 s, 0.04 s, 0.08 s and 0.16 s between attempts. grpc-go retries
//     only while the request still fits its 256 KiB per-call retry buffer
//     (about 1,000 nodes of 34 features with 5 edges each): a bigger request
//     is not sent again once it has gone out, though a call that never
//     reached a server (no connection yet) is always retried.
//
// The retried codes are limited to UNAVAILABLE: INVALID_ARGUMENT and
// RESOURCE_EXHAUSTED would fail again, and DEADLINE_EXCEEDED means the
// caller's time is spent. ProcessGraph and GetModelInfo have no side
// effects, so a retry is always safe; GraphService's ApplyDelta is made
// safe by the idempotency key Client.ApplyDelta adds.
const DefaultServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [{"service": "GCNService"}, {"service": "GraphService"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.02s",
      "maxBackoff": "0.5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Client calls gcnserve's GCNService over one gRPC connection (which may
// balance over several servers). It is safe for concurrent use; create one
// per target and share it.
type Client struct {
	conn *grpc.ClientConn
	svc  gcnpb.GCNServiceClient
	// model and version select the served model for calls that do not name
	// one; read-only after Dial.
	model, version string
}

// Option configures Dial.
type Option func(*config) error

type config struct {
	maxSend, maxRecv int
	keepalive        keepalive.ClientParameters
	serviceConfig    string
	tls              *tls.Config // nil: plaintext
	tlsCAFile        string
	certFile, key    string
	serverName       string
	token            credentials.PerRPCCredentials
	model, version   string
	dialOptions      []grpc.DialOption
}

// WithMaxSendBytes sets the largest request the client sends; default
// DefaultMaxMessageBytes. A bigger request fails with RESOURCE_EXHAUSTED
// before it is sent. The server has its own limit (--max-request-bytes).
func WithMaxSendBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("client: max send bytes %d, want > 0", n)
		}
		c.maxSend = n
		return nil
	}
}

// WithMaxReceiveBytes sets the largest response the client accepts; default
// DefaultMaxMessageBytes. A bigger response fails the call with
// RESOURCE_EXHAUSTED.
func WithMaxReceiveBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("client: max receive bytes %d, want > 0", n)
		}
		c.maxRecv = n
		return nil
	}
}

// WithKeepalive replaces DefaultKeepalive. A server enforces a minimum ping
// interval (grpc-go's default is 5 minutes); pinging more often while idle
// gets the connection closed with "too_many_pings".
func WithKeepalive(p keepalive.ClientParameters) Option {
	return func(c *config) error { c.keepalive = p; return nil }
}

// WithServiceConfig replaces DefaultServiceConfig with another gRPC service
// config in JSON (https://github.com/grpc/grpc/blob/master/doc/service_config.md).
func WithServiceConfig(json string) Option {
	return func(c *config) error { c.serviceConfig = json; return nil }
}

// WithTLS makes the connection use TLS, verifying the server's certificate
// against the PEM CA bundle in caFile, or against the system's roots when
// caFile is "".
func WithTLS(caFile string) Option {
	return func(c *config) error {
		if c.tls == nil {
			c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tlsCAFile = caFile
		return nil
	}
}

// WithClientCertificate makes the connection use TLS (as WithTLS("") unless
// WithTLS names a CA) and present the PEM certificate and key to the server,
// for servers that require client certificates (gcnserve --tls-client-ca).
func WithClientCertificate(certFile, keyFile string) Option {
	return func(c *config) error {
		if c.tls == nil {
			c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.certFile, c.key = certFile, keyFile
		return nil
	}
}

// WithServerName makes the connection use TLS (as WithTLS("") unless WithTLS
// names a CA) and verify the server's certificate against name instead of
// the target's host, for a server reached by an address its certificate
// does not name.
func WithServerName(name string) Option {
	return func(c *config) error {
		if c.tls == nil {
			c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.serverName = name
		return nil
	}
}

// WithTLSConfig makes the connection use TLS with a copy of cfg, for what
// WithTLS, WithClientCertificate and WithServerName do not cover
// (certificates held in memory, cipher suites). They still apply on top of it.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) error {
		if cfg == nil {
			return errors.New("client: nil TLS config")
		}
		c.tls = cfg.Clone()
		return nil
	}
}

// WithToken sends "authorization: Bearer <token>" with every call, for
// servers started with --auth-token-file. Over plaintext the token is
// readable by anyone on the path: use TLS beyond loopback.
func WithToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return errors.New("client: empty token")
		}
		c.token = staticToken(token)
		return nil
	}
}

// WithTokenFile is WithToken with the token read from a file (surrounding
// white space trimmed). The file is read at Dial, which fails when it is
// missing or empty, and read again when it changes, so a rotated token (a
// Kubernetes projected secret) takes effect without a new connection.
func WithTokenFile(path string) Option {
	return func(c *config) error {
		t := &tokenFile{path: path}
		if _, err := t.current(); err != nil {
			return err
		}
		c.token = t
		return nil
	}
}

// WithModel selects the served model (and version; "" for the server's
// default model and the highest version it serves) for calls whose request
// does not name one.
func WithModel(name, version string) Option {
	return func(c *config) error { c.model, c.version = name, version; return nil }
}

// WithDialOptions appends grpc-go dial options after the client's own, so
// they win (an interceptor, a custom dialer, stats handlers).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) error { c.dialOptions = append(c.dialOptions, opts...); return nil }
}

// Dial returns a Client for target, a gRPC target string: "host:port",
// "dns:///host:port" (every address of host, balanced round robin) or any
// scheme grpc-go resolves. Like grpc.NewClient it does not connect: the
// connection is made by the first call, and errors there are the call's.
// Dial fails only on bad options (an unreadable CA, certificate or token
// file).
func Dial(target string, opts ...Option) (*Client, error) {
	c := config{
		maxSend:       DefaultMaxMessageBytes,
		maxRecv:       DefaultMaxMessageBytes,
		keepalive:     DefaultKeepalive,
		serviceConfig: DefaultServiceConfig,
	}
	for _, opt := range opts {
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	creds := insecure.NewCredentials()
	if c.tls != nil {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(c.maxSend), grpc.MaxCallRecvMsgSize(c.maxRecv)),
		grpc.WithKeepaliveParams(c.keepalive),
		grpc.WithDefaultServiceConfig(c.serviceConfig),
	}
	if c.token != nil {
		dopts = append(dopts, grpc.WithPerRPCCredentials(c.token))
	}
	conn, err := grpc.NewClient(target, append(dopts, c.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{conn: conn, svc: gcnpb.NewGCNServiceClient(conn), model: c.model, version: c.version}, nil
}

func (c *config) tlsConfig() (*tls.Config, error) {
	tc := c.tls
	if c.serverName != "" {
		tc.ServerName = c.serverName
	}
	if c.tlsCAFile != "" {
		pem, err := os.ReadFile(c.tlsCAFile)
		if err != nil {
			return nil, fmt.Errorf("client: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: TLS CA %s: no PEM certificate in it", c.tlsCAFile)
		}
		tc.RootCAs = pool
	}
	if c.certFile != "" || c.key != "" {
		cert, err := tls.LoadX509KeyPair(c.certFile, c.key)
		if err != nil {
			return nil, fmt.Errorf("client: TLS client certificate: %w", err)
		}
		tc.Certificates = append(tc.Certificates, cert)
	}
	return tc, nil
}

// ProcessGraph scores every node of g (GCNService.ProcessGraph). Set
// g.IncludePredictions for each node's class and probabilities. When g
// names no model (model_name and model_version empty), the one chosen by
// WithModel is asked for; g itself is never modified. The result's
// ModelName and ModelVersion say which model answered.
//
// Errors are gRPC status errors (status.Code(err)): INVALID_ARGUMENT names
// the offending node or edge, RESOURCE_EXHAUSTED a size limit, UNAVAILABLE a
// server that could not be reached within the retry policy.
func (c *Client) ProcessGraph(ctx context.Context, g *gcnpb.GraphData, opts ...grpc.CallOption) (*gcnpb.GCNResult, error) {
	return c.svc.ProcessGraph(ctx, c.withModel(g), opts...)
}

// withModel returns g, or a shallow copy of it naming the client's model
// when g names none (the copy shares g's nodes and edges).
func (c *Client) withModel(g *gcnpb.GraphData) *gcnpb.GraphData {
	if c.model == "" && c.version == "" || g.GetModelName() != "" || g.GetModelVersion() != "" {
		return g
	}
	return &gcnpb.GraphData{
		Nodes:              g.GetNodes(),
		Edges:              g.GetEdges(),
		IncludePredictions: g.GetIncludePredictions(),
		ModelName:          c.model,
		ModelVersion:       c.version,
	}
}

// GetModelInfo describes the model chosen by WithModel (the server's default
// model when none was chosen), via GCNService.GetModelInfo: its feature
// dimension, classes, what a score means, identity and limits.
func (c *Client) GetModelInfo(ctx context.Context, opts ...grpc.CallOption) (*gcnpb.ModelInfo, error) {
	return c.svc.GetModelInfo(ctx, &gcnpb.ModelInfoRequest{ModelName: c.model, ModelVersion: c.version}, opts...)
}

// ListModels lists every model the server knows, its versions and their
// states, and the default model (GCNService.ListModels).
func (c *Client) ListModels(ctx context.Context, opts ...grpc.CallOption) (*gcnpb.ListModelsResponse, error) {
	return c.svc.ListModels(ctx, &gcnpb.ListModelsRequest{}, opts...)
}

// Conn returns the underlying connection, for other services on the same
// server (grpc.health.v1, reflection). It is closed by Close.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }
