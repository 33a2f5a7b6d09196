package serving

import (
	"context"
	"testing"
	"time"

	"github.com/gcnserve/gcnserve/internal/admission"
)

// TestBeginReadReservation: BeginRead reserves what reading holds (the
// transport's figure), SetWireBytes resizes to the decode bound of the real
// size, Close gives everything back; Begin still reserves the decode bound
// of its bound.
func TestBeginReadReservation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := admission.New(admission.Options{Bytes: 1 << 30, MaxQueue: 1})
	svc := New(Config{Budget: b, MaxRequestBytes: 64 << 20})

	r, err := svc.BeginRead(ctx, 128<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.InUse(); got != 128<<20 {
		t.Errorf("after BeginRead(128 MiB): %d bytes in use, want %d", got, 128<<20)
	}
	if err := r.SetWireBytes(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if got := b.InUse(); got != DecodeBound(1000) {
		t.Errorf("after SetWireBytes(1000): %d bytes in use, want %d", got, DecodeBound(1000))
	}
	r.Close()
	if got := b.InUse(); got != 0 {
		t.Errorf("after Close: %d bytes in use, want 0", got)
	}

	r, err = svc.Begin(ctx, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := b.InUse(); got != DecodeBound(64<<20) {
		t.Errorf("after Begin(64 MiB): %d bytes in use, want %d", got, DecodeBound(64<<20))
	}
}
