package client

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// staticToken sends one bearer token with every call.
type staticToken string

func (t staticToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false so that a token can be used against a
// plaintext server on loopback; WithToken's comment warns about the rest.
func (staticToken) RequireTransportSecurity() bool { return false }

// tokenFile sends the bearer token held in a file, re-reading the file when
// its size or modification time changes.
type tokenFile struct {
	path string

	mu      sync.Mutex // guards the fields below
	modTime time.Time
	size    int64
	token   string
}

func (t *tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.current()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (*tokenFile) RequireTransportSecurity() bool { return false }

// current returns the file's token, reading the file again if it changed.
func (t *tokenFile) current() (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("client: token file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return t.token, nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("client: token file: %w", err)
	}
	tok := string(bytes.TrimSpace(data))
	if tok == "" {
		return "", fmt.Errorf("client: token file %s is empty", t.path)
	}
	t.token, t.modTime, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}
