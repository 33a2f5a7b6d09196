package oip

import "context"

// predict runs decoded inputs on a leased model and returns the requested
// outputs. Both transports call it; it holds no protocol detail.
func (s *Server) predict(ctx context.Context, m Model, inputs []inputTensor, requested []string) ([]outputTensor, error) {
	info := m.Info()
	names, err := selectOutputs(requested)
	if err != nil {
		return nil, err
	}
	t, err := buildTensors(info, inputs)
	if err != nil {
		return nil, err
	}
	release, err := s.backend.Admit(ctx, inputBytes(t, info.NumClasses))
	if err != nil {
		return nil, err
	}
	defer release()
	p, err := m.Predict(ctx, t)
	if err != nil {
		return nil, err
	}
	return buildOutputs(names, t.NumNodes, p, info.NumClasses), nil
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
