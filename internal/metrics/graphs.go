package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// graphMetrics are the stored-graph metrics (internal/serving graphs.go).
type graphMetrics struct {
	graphs        prometheus.Gauge
	nodes         prometheus.Gauge
	edges         prometheus.Gauge
	bytes         prometheus.Gauge
	deltas        *prometheus.CounterVec // result
	deltaDuration prometheus.Histogram
	deltaChanges  prometheus.Counter
	scoreDuration prometheus.Histogram
	storeWrite    *prometheus.HistogramVec // op
	refusals      *prometheus.CounterVec   // reason
}

func newGraphMetrics(f factory) graphMetrics {
	return graphMetrics{
		graphs: f.gauge("stored_graphs", "Graphs stored in the server (CreateGraph, LoadGraph; recovered from --graph-store at start)."),
		nodes:  f.gauge("stored_graph_nodes", "Nodes of all stored graphs."),
		edges:  f.gauge("stored_graph_edges", "Listed edges of all stored graphs (self loops included)."),
		bytes:  f.gauge("stored_graph_bytes", "Memory held by all stored graphs, as counted against --max-graph-bytes."),
		deltas: f.counterVec("graph_deltas_total",
			"ApplyDelta calls by result: applied, duplicate (idempotency key seen: not applied again), refused (invalid, revision conflict, budget).", "result"),
		deltaDuration: f.histogram("graph_delta_duration_seconds",
			"Time to apply one delta: validation, the durable store write (fsync) when --graph-store is set, and the in-memory update.", latencyBuckets),
		deltaChanges: f.counter("graph_delta_changes_total",
			"Changes applied by deltas: each node upserted or removed and each edge added or removed."),
		scoreDuration: f.histogram("graph_score_duration_seconds",
			"Time of a successful ScoreNodes: subgraph extraction and model run.", latencyBuckets),
		storeWrite: f.histogramVec("graph_store_write_seconds",
			"Durable writes to --graph-store, commit and fsync included, by op: append (one delta), snapshot (log compaction), create, delete.", latencyBuckets, "op"),
		refusals: f.counterVec("graph_model_refusals_total",
			"Scores refused because of the graph's model, by reason: removed (model no longer served), feature_dim (the served version's feature dimension does not fit the graph), no_receptive_field.", "reason"),
	}
}

// SetStoredGraphs sets the stored-graph totals.
func (m *Metrics) SetStoredGraphs(graphs, nodes int, edges, bytes int64) {
	if m == nil {
		return
	}
	m.graph.graphs.Set(float64(graphs))
	m.graph.nodes.Set(float64(nodes))
	m.graph.edges.Set(float64(edges))
	m.graph.bytes.Set(float64(bytes))
}

// GraphDelta records one ApplyDelta: its result ("applied", "duplicate",
// "refused"), duration and, when applied, its number of changes.
func (m *Metrics) GraphDelta(result string, d time.Duration, changes int) {
	if m == nil {
		return
	}
	m.graph.deltas.WithLabelValues(result).Inc()
	if result != "refused" {
		m.graph.deltaDuration.Observe(d.Seconds())
	}
	m.graph.deltaChanges.Add(float64(changes))
}

// GraphScored records a successful ScoreNodes.
func (m *Metrics) GraphScored(d time.Duration) {
	if m == nil {
		return
	}
	m.graph.scoreDuration.Observe(d.Seconds())
}

// GraphStoreWrite records one durable store write.
func (m *Metrics) GraphStoreWrite(op string, d time.Duration) {
	if m == nil {
		return
	}
	m.graph.storeWrite.WithLabelValues(op).Observe(d.Seconds())
}

// GraphModelRefused records a score refused because of the graph's model.
func (m *Metrics) GraphModelRefused(reason string) {
	if m == nil {
		return
	}
	m.graph.refusals.WithLabelValues(reason).Inc()
}
