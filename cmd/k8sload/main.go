// Command k8sload is the steady client load of `make k8s-e2e`
// (scripts/k8s_e2e.sh): it sends ProcessGraph calls at a fixed rate to the
// pods of a Kubernetes headless Service, configured as README "Scaling out"
// recommends (client.Dial: round_robin, client-side health checking, retries
// of UNAVAILABLE; plus waitForReady and a 10 s deadline per call), and counts
// every call's outcome by the pod that answered and the model version it
// reported.
//
// The Service's ready pods come from a gRPC resolver that watches the
// Service's EndpointSlices through the API server, as CoreDNS does for a
// headless Service's DNS name (only endpoints whose ready condition is true;
// publishNotReadyAddresses: false), so the lab needs no cluster DNS.
//
//	k8sload --api https://127.0.0.1:6443 --token-file T --ca-file C \
//	  --service default/gcnserve-headless --port 9999 --graph examples/karate.json \
//	  --control 127.0.0.1:19090
//
// The script reads and resets the counters over --control:
//
//	GET /phase?name=NEXT   counters since the last /phase, then start NEXT
//	GET /total             counters since the start
//
// Each answer is one line: "requests=N failed=N peers=IP:N,... versions=IP/V:N,...".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"

	"github.com/gcnserve/gcnserve/client"
)

func main() {
	var (
		api       = flag.String("api", "", "API server URL, e.g. https://127.0.0.1:6443")
		tokenFile = flag.String("token-file", "", "file holding a bearer token for the API server")
		caFile    = flag.String("ca-file", "", "PEM CA of the API server's serving certificate")
		service   = flag.String("service", "default/gcnserve-headless", "NAMESPACE/SERVICE whose ready endpoints get the calls")
		port      = flag.Int("port", 9999, "the pods' gRPC port")
		graphPath = flag.String("graph", "examples/karate.json", "request graph (JSON)")
		rps       = flag.Float64("rps", 100, "calls per second, sent at a steady pace")
		maxInFl   = flag.Int("max-inflight", 1000, "most calls in flight (a call over this is counted failed)")
		control   = flag.String("control", "127.0.0.1:19090", "loopback address of the control HTTP endpoint")
		poll      = flag.Duration("poll", 200*time.Millisecond, "how often the resolver lists the EndpointSlices")
	)
	flag.Parse()
	if err := run(*api, *tokenFile, *caFile, *service, *port, *graphPath, *rps, *maxInFl, *control, *poll); err != nil {
		log.Fatalf("k8sload: %v", err)
	}
}

func run(api, tokenFile, caFile, service string, port int, graphPath string, rps float64, maxInFl int, control string, poll time.Duration) error {
	ns, svc, ok := strings.Cut(service, "/")
	if !ok || ns == "" || svc == "" {
		return fmt.Errorf("--service %q: want NAMESPACE/SERVICE", service)
	}
	if rps <= 0 {
		return fmt.Errorf("--rps %v: must be positive", rps)
	}
	hc, err := apiClient(caFile)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	g, err := client.ReadJSONFile(graphPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rb := &sliceResolver{
		hc: hc, api: strings.TrimSuffix(api, "/"), token: strings.TrimSpace(string(tok)),
		ns: ns, svc: svc, port: port, poll: poll,
	}
	c, err := client.Dial("k8s:///"+ns+"/"+svc, client.WithDialOptions(grpc.WithResolvers(rb)))
	if err != nil {
		return err
	}
	defer c.Close()

	st := newStats()
	mux := http.NewServeMux()
	mux.HandleFunc("/phase", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, st.phase(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("/total", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, st.total.String())
	})
	ln, err := net.Listen("tcp", control)
	if err != nil {
		return fmt.Errorf("--control: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	log.Printf("k8sload: %v calls/s to %s port %d (EndpointSlices from %s); control on %s", rps, service, port, api, ln.Addr())

	sem := make(chan struct{}, maxInFl)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			st.record("", "", fmt.Errorf("more than %d calls in flight", maxInFl))
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var p peer.Peer
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.ProcessGraph(cctx, g, grpc.WaitForReady(true), grpc.Peer(&p))
			addr := ""
			if p.Addr != nil {
				addr, _, _ = net.SplitHostPort(p.Addr.String())
			}
			if err == nil && len(res.GetNodeScores()) != len(g.GetNodes()) {
				err = fmt.Errorf("%d scores for %d nodes", len(res.GetNodeScores()), len(g.GetNodes()))
			}
			st.record(addr, res.GetModelVersion(), err)
		}()
	}
	wg.Wait()
	log.Printf("k8sload: total %s", st.total.String())
	return nil
}

// counts is one period's outcomes.
type counts struct {
	requests, failed int
	peers            map[string]int // pod IP -> answered calls
	versions         map[string]int // "IP/version" -> answered calls
	errs             []string       // the first few failures
}

func newCounts() *counts {
	return &counts{peers: map[string]int{}, versions: map[string]int{}}
}

func (c *counts) add(addr, version string, err error) {
	c.requests++
	if err != nil {
		c.failed++
		if len(c.errs) < 5 {
			c.errs = append(c.errs, err.Error())
		}
		return
	}
	c.peers[addr]++
	c.versions[addr+"/"+version]++
}

func (c *counts) String() string {
	join := func(m map[string]int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + strconv.Itoa(m[k])
		}
		return strings.Join(parts, ",")
	}
	s := fmt.Sprintf("requests=%d failed=%d peers=%s versions=%s", c.requests, c.failed, join(c.peers), join(c.versions))
	if len(c.errs) > 0 {
		s += fmt.Sprintf(" errors=%q", c.errs)
	}
	return s
}

type stats struct {
	mu        sync.Mutex
	total     *counts
	cur       *counts
	name      string
	startedAt time.Time
}

func newStats() *stats {
	return &stats{total: newCounts(), cur: newCounts(), name: "start", startedAt: time.Now()}
}

func (s *stats) record(addr, version string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total.add(addr, version, err)
	s.cur.add(addr, version, err)
}

// phase returns the counters since the last call and starts a new period.
func (s *stats) phase(next string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := fmt.Sprintf("phase=%s seconds=%.1f %s", s.name, time.Since(s.startedAt).Seconds(), s.cur.String())
	s.cur, s.name, s.startedAt = newCounts(), next, time.Now()
	return out
}

func apiClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// sliceResolver is a resolver.Builder for "k8s:///NAMESPACE/SERVICE": the
// addresses are the ready endpoints of the Service's EndpointSlices, listed
// every poll interval and pushed to the channel when they change.
type sliceResolver struct {
	hc         *http.Client
	api, token string
	ns, svc    string
	port       int
	poll       time.Duration
}

func (b *sliceResolver) Scheme() string { return "k8s" }

func (b *sliceResolver) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &sliceWatch{cancel: cancel, now: make(chan struct{}, 1)}
	go r.run(ctx, b, cc)
	return r, nil
}

type sliceWatch struct {
	cancel context.CancelFunc
	now    chan struct{}
}

func (r *sliceWatch) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *sliceWatch) Close() { r.cancel() }

func (r *sliceWatch) run(ctx context.Context, b *sliceResolver, cc resolver.ClientConn) {
	var last []string
	t := time.NewTicker(b.poll)
	defer t.Stop()
	for {
		addrs, err := b.list(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Printf("k8sload: resolver: %v", err)
		case err == nil && !slices.Equal(addrs, last):
			last = addrs
			log.Printf("k8sload: ready endpoints of %s/%s: %v", b.ns, b.svc, addrs)
			st := resolver.State{}
			for _, a := range addrs {
				st.Addresses = append(st.Addresses, resolver.Address{Addr: net.JoinHostPort(a, strconv.Itoa(b.port))})
			}
			if err := cc.UpdateState(st); err != nil && len(addrs) > 0 {
				log.Printf("k8sload: resolver update: %v", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.now:
		}
	}
}

// endpointSliceList is the part of discovery.k8s.io/v1 EndpointSliceList read here.
type endpointSliceList struct {
	Items []struct {
		Endpoints []struct {
			Addresses  []string `json:"addresses"`
			Conditions struct {
				Ready *bool `json:"ready"`
			} `json:"conditions"`
		} `json:"endpoints"`
	} `json:"items"`
}

// list returns the sorted ready addresses; an absent ready condition counts
// as ready, as the EndpointSlice API defines.
func (b *sliceResolver) list(ctx context.Context) ([]string, error) {
	u := fmt.Sprintf("%s/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector=%s",
		b.api, url.PathEscape(b.ns), url.QueryEscape("kubernetes.io/service-name="+b.svc))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var l endpointSliceList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	var addrs []string
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			addrs = append(addrs, e.Addresses...)
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}
