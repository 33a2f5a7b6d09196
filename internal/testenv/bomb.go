package testenv

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"testing"
)

// GzipBomb is a protobuf message holding one length-delimited field (number
// field) of n bytes ('a'), gzip-compressed at the best level: 63 MB becomes
// about 61 KB, 200 MB about 200 KB. The attack tests send it where a small
// compressed message must not inflate into a big one.
func GzipBomb(t testing.TB, field, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	head := binary.AppendUvarint(nil, uint64(field<<3|2))
	head = binary.AppendUvarint(head, uint64(n))
	zw.Write(head)
	chunk := bytes.Repeat([]byte{'a'}, 1<<20)
	for left := n; left > 0; left -= len(chunk) {
		zw.Write(chunk[:min(left, len(chunk))])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
