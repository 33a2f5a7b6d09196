package oip

import (
	"context"
)

// decodedRequest is an inference request after decoding, whatever the
// protocol: the model it names, its inputs and the outputs it asks for.
type decodedRequest struct {
	model, version string
	inputs         []inputTensor
	outputs        []string
}

// infer runs a decoded request on the model it names (through req, which
// the caller began and closes) and returns the model and the requested
// outputs. Both transports call it; it holds no protocol detail.
func (s *Server) infer(ctx context.Context, req Request, d *decodedRequest) (Model, []outputTensor, error) {
	names, err := selectOutputs(d.outputs)
	if err != nil {
		return nil, nil, err
	}
	m, err := req.Route(d.model, d.version)
	if err != nil {
		return nil, nil, err
	}
	info := m.Info()
	t, err := buildTensors(info, d.inputs)
	if err != nil {
		return nil, nil, err
	}
	p, err := req.Predict(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	return m, buildOutputs(names, t.NumNodes, p, info.NumClasses), nil
}

// modelReady reports whether a model version can serve now. A model (or
// version) the server does not have is the backend's NotFound error.
func (s *Server) modelReady(name, version string) (bool, error) {
	m, err := s.backend.Acquire(name, version)
	if isUnavailable(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m.Release()
	return true, nil
}

// modelMetadata describes a model version.
func (s *Server) modelMetadata(name, version string) (modelMetadata, error) {
	m, err := s.backend.Acquire(name, version)
	if err != nil {
		return modelMetadata{}, err
	}
	defer m.Release()
	return describeModel(m, s.backend.Versions(m.Name())), nil
}
