// Package gcnerr defines the one error type every layer of gcnserve returns
// for a request it refuses. The public gcn package re-exports it (gcn.Error);
// it lives here, below gcn, so that internal/graphwire can return it too.
package gcnerr

import "fmt"

// Kind classifies an Error. Each kind has exactly one gRPC code and one HTTP
// status (internal/serving holds that table).
type Kind int

const (
	// InvalidArgument: the request breaks the contract (bad id, edge, shape,
	// feature value, malformed bytes). Retrying the same request cannot help.
	InvalidArgument Kind = iota + 1
	// TooLarge: the request exceeds a size limit (nodes, edges, bytes).
	TooLarge
	// NotFound: the request names a model or version that is not served.
	NotFound
	// Overloaded: admission control refused the request for now (memory
	// budget, queue). Retrying later, with backoff, may succeed.
	Overloaded
	// Unavailable: the model or server is closing or not ready.
	Unavailable
	// Unauthenticated: missing or wrong credentials.
	Unauthenticated
	// FailedPrecondition: the system is not in the state the request needs
	// (a stored graph whose model was removed, a model without the metadata
	// stored graphs need). Retrying cannot help until that state changes.
	FailedPrecondition
	// Aborted: a concurrency conflict (a delta's expected revision is not
	// the graph's). Re-read and retry.
	Aborted
	// AlreadyExists: the request creates something that exists (a stored
	// graph id).
	AlreadyExists
)

var kindNames = [...]string{
	InvalidArgument:    "invalid argument",
	TooLarge:           "too large",
	NotFound:           "not found",
	Overloaded:         "overloaded",
	Unavailable:        "unavailable",
	Unauthenticated:    "unauthenticated",
	FailedPrecondition: "failed precondition",
	Aborted:            "aborted",
	AlreadyExists:      "already exists",
}

// String names the kind.
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a refusal meant for the client: Msg names what is wrong (the node,
// edge, tensor, limit or model) and is safe to send back as is.
type Error struct {
	Kind Kind
	Msg  string
}

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

// New returns an *Error of kind with a formatted message.
func New(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
