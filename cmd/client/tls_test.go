package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/servertest"
)

// TestTLSFlags: --tls-ca and --tls-server-name against gcnserve --tls-cert.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	srv := servertest.Start(t, "--model", "model/karate.onnx", "--tls-cert", certFile, "--tls-key", keyFile)
	_, port, _ := net.SplitHostPort(srv.Addr)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"CA", []string{"--addr", srv.Addr, "--tls-ca", certFile}, 0, "node  score   class"},
		{"server name", []string{"--addr", "localhost:" + port, "--tls-ca", certFile, "--tls-server-name", "gcnserve.test"}, 0, "node  score   class"},
		{"system roots", []string{"--addr", srv.Addr, "--tls"}, 1, "gcnclient: server: Unavailable"},
		{"plaintext", []string{"--addr", srv.Addr}, 1, "gcnclient: server: Unavailable"},
	} {
		code, stdout, stderr := gcnclient(t, append(tc.args, "--timeout", "5s", "examples/karate.json")...)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%s: exit %d, output %q %q; want %d and %q", tc.name, code, stdout, stderr, tc.code, tc.want)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and gcnserve.test, its own CA.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gcnserve.test"},
		DNSNames:              []string{"gcnserve.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
