package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// selfSigned writes a self-signed certificate for "localhost" that is also
// its own CA, and returns the cert and key paths and the parsed certificate.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, cert tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, cert, pool
}

// serveTLS runs s in memory and returns a dialer for clients with creds.
func serveTLS(t *testing.T, s *Server) func(creds credentials.TransportCredentials) gcnpb.GCNServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Shutdown()
		<-done
		s.Close()
	})
	return func(creds credentials.TransportCredentials) gcnpb.GCNServiceClient {
		conn, err := grpc.NewClient("passthrough:///localhost",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return gcnpb.NewGCNServiceClient(conn)
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCert, serverKey, _, serverPool := selfSigned(t, dir, "server")
	clientCA, _, clientCert, _ := selfSigned(t, dir, "client")

	cfg := testConfig(t)
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = serverCert, serverKey, clientCA
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dial := serveTLS(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	withCert := credentials.NewTLS(&tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{clientCert}})
	if _, err := dial(withCert).ProcessGraph(ctx, triangle()); err != nil {
		t.Errorf("TLS client with a certificate: %v, want scores", err)
	}
	noCert := credentials.NewTLS(&tls.Config{RootCAs: serverPool})
	if _, err := dial(noCert).ProcessGraph(ctx, triangle()); err == nil {
		t.Error("TLS client without a certificate got through mutual TLS")
	}
	if _, err := dial(insecure.NewCredentials()).ProcessGraph(ctx, triangle()); err == nil {
		t.Error("plaintext client got through a TLS server")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{TLSCertFile: "a.crt"},
		{TLSClientCAFile: "ca.pem"},
		{TLSCertFile: "/nonexistent.crt", TLSKeyFile: "/nonexistent.key"},
	} {
		if _, err := transportCredentials(cfg); err == nil {
			t.Errorf("transportCredentials(%+v): no error", cfg)
		}
	}
}
