package modelrepo

// PeakResident returns the most sessions of model name that were open at
// once.
func (r *Repository) PeakResident(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak[name]
}

// Resident returns how many sessions of model name are open now.
func (r *Repository) Resident(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resident[name]
}
