package server

import (
	"context"
	"errors"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/gen/inferencepb"
	"github.com/gcnserve/gcnserve/internal/transport/grpcapi"
)

// TestReadDeadline: an armed read deadline ends the call's context with
// DeadlineExceeded, as the transport's reader reports it; a disarmed one
// never fires; the parent's end stops it.
func TestReadDeadline(t *testing.T) {
	ctx := withReadDeadline(context.Background(), 20*time.Millisecond, 0)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("read deadline of 20ms did not fire within 5s")
	}
	if err := ctx.Err(); err != context.DeadlineExceeded {
		t.Errorf("Err after the read deadline = %v, want context.DeadlineExceeded", err)
	}

	ctx = withReadDeadline(context.Background(), 20*time.Millisecond, 0)
	disarmReadDeadline(ctx)
	time.Sleep(100 * time.Millisecond)
	if err := ctx.Err(); err != nil {
		t.Errorf("Err 100ms after disarming a 20ms read deadline = %v, want nil", err)
	}

	parent, cancel := context.WithCancel(context.Background())
	ctx = withReadDeadline(parent, time.Hour, 0)
	cancel()
	<-ctx.Done()
	d := ctx.Value(readDeadlineKey{}).(*readDeadline)
	// context.AfterFunc stops the timer on its own goroutine: give it time.
	time.Sleep(500 * time.Millisecond)
	if d.timer.Stop() {
		t.Error("the read deadline's timer still ran 500ms after the call's context ended")
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err after the call ended = %v, want context.Canceled", ctx.Err())
	}
}

// TestMessageLimit: every request message but ModelInfer's gets the small
// limit; ProcessGraph's raw message sets its own in grpcapi.
func TestMessageLimit(t *testing.T) {
	for _, tc := range []struct {
		msg  any
		want int
	}{
		{&inferencepb.ModelInferRequest{}, 0},
		{&healthpb.HealthCheckRequest{}, grpcapi.MaxSmallRequestBytes},
		{&gcnpb.ModelInfoRequest{}, grpcapi.MaxSmallRequestBytes},
		{&inferencepb.ModelMetadataRequest{}, grpcapi.MaxSmallRequestBytes},
	} {
		if got := messageLimit(tc.msg); got != tc.want {
			t.Errorf("messageLimit(%T) = %d, want %d", tc.msg, got, tc.want)
		}
	}
}

// TestCallDeadlineRearmed: with no read timeout the deadline waits for a
// handler; ArmSend (ArmRead) cuts the call off after the send (read)
// timeout with DeadlineExceeded; Disarm in time keeps it alive.
func TestCallDeadlineRearmed(t *testing.T) {
	ctx := withReadDeadline(context.Background(), 0, 30*time.Millisecond)
	d := grpcapi.CallDeadlineFrom(ctx)
	time.Sleep(60 * time.Millisecond)
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err before any arming = %v, want nil (no read timeout)", err)
	}
	d.ArmSend()
	time.Sleep(5 * time.Millisecond)
	d.Disarm()
	time.Sleep(60 * time.Millisecond)
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err after a send disarmed in time = %v, want nil", err)
	}
	d.ArmSend()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("an armed send deadline did not end the call")
	}
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err after the send deadline = %v, want DeadlineExceeded", err)
	}

	ctx = withReadDeadline(context.Background(), 30*time.Millisecond, 0)
	disarmReadDeadline(ctx) // the first message arrived
	grpcapi.CallDeadlineFrom(ctx).ArmRead()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a re-armed read deadline did not end the call")
	}
}
