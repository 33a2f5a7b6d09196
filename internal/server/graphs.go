package server

import (
	"os"
	"path/filepath"
	"time"

	"github.com/gcnserve/gcnserve/internal/graphs/store"
	"github.com/gcnserve/gcnserve/internal/serving"
)

// openGraphs opens the graph store (when configured), recovers its graphs
// and says at start where graphs live.
func (s *Server) openGraphs() error {
	start := time.Now()
	opts := serving.GraphOptions{MaxBytes: s.cfg.MaxGraphBytes, SnapshotBytes: s.cfg.GraphSnapshotBytes,
		RevisionWait: s.cfg.GraphRevisionWait, SendTimeout: s.cfg.StreamSendTimeout}
	if s.cfg.GraphIncremental {
		// The composition: serving's adapter puts internal/incremental
		// behind graphs.Scorer; graphs and incremental do not know each other.
		opts.NewScorer = serving.IncrementalScorer
	}
	if s.cfg.GraphStore != "" {
		// bbolt makes a 0-byte file a new store: say so, since a store
		// file truncated to nothing (a bad restore) would otherwise start
		// empty without a word.
		path := filepath.Join(s.cfg.GraphStore, store.FileName)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			s.log.Warn("graph store file is empty (0 bytes): starting a new store with no graphs", "file", path)
		}
		st, err := store.Open(s.cfg.GraphStore)
		if err != nil {
			return err
		}
		s.store, opts.Store = st, st
	}
	gs, err := serving.NewGraphs(s.svc, opts)
	if err != nil {
		if s.store != nil {
			s.store.Close()
			s.store = nil
		}
		return err
	}
	s.graphs = gs
	if s.store == nil {
		s.log.Info("stored graphs live in memory only: they are lost at exit (set --graph-store DIR to keep them)",
			"max_graph_bytes", s.cfg.MaxGraphBytes)
	} else {
		// took: opening the store (bbolt rebuilds its freelist), reading
		// every snapshot and replaying every log.
		s.log.Info("stored graphs recovered", "graph_store", s.cfg.GraphStore,
			"graphs", len(gs.ListGraphs()), "max_graph_bytes", s.cfg.MaxGraphBytes, "took", time.Since(start))
	}
	return nil
}
