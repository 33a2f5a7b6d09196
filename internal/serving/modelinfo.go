package serving

import (
	"strconv"

	gcnpb "github.com/gcnserve/gcnserve/gen"
	"github.com/gcnserve/gcnserve/internal/modelrepo"
)

// ModelInfo describes a leased version and the server's limits, as the
// tutorial API (GetModelInfo, GET /v1/model-info) answers.
func (svc *Service) ModelInfo(lease *modelrepo.Lease) *gcnpb.ModelInfo {
	info := lease.Model.Info()
	cfg := svc.cfg
	return &gcnpb.ModelInfo{
		Name:               lease.Name,
		Version:            strconv.FormatInt(lease.Version, 10),
		Sha256:             info.SHA256,
		OnnxruntimeVersion: info.ORTVersion,
		FeatureDim:         int32(info.FeatureDim),
		NumClasses:         int32(info.NumClasses),
		ClassNames:         info.ClassNames,
		ScoreClass:         int32(info.ScoreClass),
		ScoreMeaning:       info.ScoreMeaning,
		OutputKind:         info.OutputKind,
		Dataset:            info.Dataset,
		TestAccuracy:       float32(info.TestAccuracy),
		Metadata:           info.Metadata,
		MaxNodes:           int64(cfg.MaxNodes),
		MaxEdges:           int64(cfg.MaxEdges),
		MaxRequestBytes:    int64(cfg.MaxRequestBytes),
		Batching:           info.Batching,
	}
}

// ListModels describes every model and version the server knows.
func (svc *Service) ListModels() *gcnpb.ListModelsResponse {
	res := &gcnpb.ListModelsResponse{DefaultModel: svc.DefaultModel()}
	for _, m := range svc.Models() {
		ms := &gcnpb.ModelStatus{Name: m.Name}
		for _, v := range m.Versions {
			ms.Versions = append(ms.Versions, &gcnpb.ModelVersionStatus{
				Version: strconv.FormatInt(v.Version, 10),
				State:   v.State.String(),
				Reason:  v.Reason,
				Sha256:  v.SHA256,
			})
		}
		res.Models = append(res.Models, ms)
	}
	return res
}
