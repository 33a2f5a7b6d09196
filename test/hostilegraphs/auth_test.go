package hostilegraphs

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// TestNoToken: every GraphService method and every /v1/graphs route
// without a token is refused (UNAUTHENTICATED, 401) before its message or
// body is read: a stream that never sends a message, and an HTTP request
// that announces a 50 MB body and sends none, are answered at once, and a
// 40 MB delta without a token moves peak RSS by less than 16 MiB.
func TestNoToken(t *testing.T) {
	s := start(t)
	s.create(t, "g", 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Unary methods with ordinary messages.
	calls := map[string]func() error{
		"CreateGraph": func() error {
			_, err := s.gc.CreateGraph(ctx, &gcnpb.CreateGraphRequest{GraphId: "x", Graph: ring("n", 3)})
			return err
		},
		"ApplyDelta": func() error {
			_, err := s.gc.ApplyDelta(ctx, &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: []*gcnpb.Node{node("z", 1)}})
			return err
		},
		"ScoreNodes": func() error {
			_, err := s.gc.ScoreNodes(ctx, &gcnpb.ScoreRequest{GraphId: "g", NodeIds: []string{"n0"}})
			return err
		},
		"GetGraph": func() error {
			_, err := s.gc.GetGraph(ctx, &gcnpb.GetGraphRequest{GraphId: "g"})
			return err
		},
		"ListGraphs": func() error {
			_, err := s.gc.ListGraphs(ctx, &gcnpb.ListGraphsRequest{})
			return err
		},
		"DeleteGraph": func() error {
			_, err := s.gc.DeleteGraph(ctx, &gcnpb.DeleteGraphRequest{GraphId: "g"})
			return err
		},
		"ExportGraph": func() error {
			st, err := s.gc.ExportGraph(ctx, &gcnpb.ExportGraphRequest{GraphId: "g"})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		},
	}
	for name, call := range calls {
		wantStatus(t, name+" without a token", call(), codes.Unauthenticated)
	}

	// A LoadGraph stream that sends nothing: refused from its headers.
	began := time.Now()
	cs, err := s.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, gcnpb.GraphService_LoadGraph_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	err = cs.RecvMsg(new(gcnpb.GraphInfo))
	wantStatus(t, "LoadGraph without a token, no chunk sent", err, codes.Unauthenticated)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("LoadGraph without a token answered after %v, want at once (before any chunk)", took)
	}

	// A big message without a token is not read.
	before := s.Memory(t, "VmHWM")
	big := &gcnpb.DeltaRequest{GraphId: "g", UpsertNodes: []*gcnpb.Node{{Id: "big", Features: make([]float32, 10<<20)}}}
	for range 4 {
		_, err := s.gc.ApplyDelta(ctx, big)
		wantStatus(t, "a 40 MB ApplyDelta without a token", err, codes.Unauthenticated)
	}
	growth := s.Memory(t, "VmHWM") - before
	t.Logf("4 x 40 MB ApplyDelta without a token: peak RSS grew by %s", mib(growth))
	if growth > 16<<20 {
		t.Errorf("4 x 40 MB ApplyDelta without a token: peak RSS grew by %s, want under 16 MiB (refused before reading)", mib(growth))
	}

	// HTTP: every route, announcing a 50 MB body and sending none.
	routes := []string{
		"POST /v1/graphs", "GET /v1/graphs", "GET /v1/graphs/g", "DELETE /v1/graphs/g",
		"POST /v1/graphs/g/deltas", "POST /v1/graphs/g/score", "GET /v1/graphs/g/export",
	}
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		c, err := net.Dial("tcp", s.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{", method, path)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Errorf("%s without a token, 50 MB announced, 1 byte sent: no answer within 5s (%v), want 401 at once", route, err)
			continue
		}
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", route, res.StatusCode)
		}
	}
	// The graph is untouched.
	info, err := s.gc.GetGraph(callCtx(t, 10*time.Second), &gcnpb.GetGraphRequest{GraphId: "g"})
	if err != nil || info.Revision != 1 || info.Nodes != 10 {
		t.Errorf("graph after the calls without a token: %v %v, want revision 1 with 10 nodes", info, err)
	}
	if status.Code(err) == codes.OK {
		s.serving(t, "calls without a token")
	}
}
