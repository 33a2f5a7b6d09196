package modelrepo

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gcnserve/gcnserve/gcn"
)

// fileModelName is a single file's model name: its model_name metadata, else
// the file name without its extension.
func fileModelName(info gcn.Info, path string) string {
	if n := info.Name; n != "" && checkModelName(n) == nil {
		return n
	}
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// fileModelVersion is a single file's version: its integer model_version
// metadata, else 1.
func fileModelVersion(info gcn.Info) int64 {
	if v, ok := parseVersion(info.Version); ok {
		return v
	}
	if v, err := strconv.ParseInt(info.Version, 10, 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// Single-file mode (Config.ModelFile) is a repository of one model with one
// version: scanFile stands in for scanRepository, and the rest (load,
// refuse, swap, drain) is the repository's. Only the identity differs: the
// model is named, and the version numbered, by the file's metadata, known
// once it is loaded (adoptFileIdentity); a changed file replaces the served
// version whatever its number; a removed file leaves the loaded copy serving.

// scanFile is scanRepository for single-file mode. The model and version
// keys are those of the model's entry: the file's metadata after the first
// load, the file name and 0 before. A file that is gone while a copy is
// loaded leaves that version as it is (partial, gone), so the copy serves
// on. Called with reconcileSem held.
func (r *Repository) scanFile() (map[string]*diskModel, map[string]string) {
	path := r.cfg.ModelFile
	name, version, loaded := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), int64(0), false
	for n, e := range r.models { // at most one
		name = n
		for v, ve := range e.versions { // at most one
			version, loaded = v, ve.live != nil
		}
	}
	d := &diskModel{versions: make(map[int64]diskVersion)}
	skipped := make(map[string]string)
	fi, err := statFile(path, MaxModelBytes)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		d.versions[version] = diskVersion{path: path, stat: statOf(fi), refused: refused.reason}
	case err != nil && loaded:
		d.partial, d.gone = true, err.Error()
		skipped[path] = "model file is gone; serving the copy loaded before: " + err.Error()
	case err != nil:
		d.versions[version] = diskVersion{path: path, refused: "read: " + err.Error()}
	default:
		d.versions[version] = diskVersion{path: path, stat: statOf(fi)}
	}
	return map[string]*diskModel{name: d}, skipped
}

// adoptFileIdentity re-keys single-file mode's entries by the loaded file's
// metadata: the first load names the model, every load numbers the version.
// Called with mu and reconcileSem held.
func (r *Repository) adoptFileIdentity(e *modelEntry, ve *versionEntry, in *instance) {
	if r.fileName == "" {
		delete(r.models, e.name)
		e.name = in.name
		r.models[e.name] = e
		r.fileName = e.name
	}
	if ve.version != in.version {
		delete(e.versions, ve.version)
		ve.version = in.version
		e.versions[ve.version] = ve
	}
}
