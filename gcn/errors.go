package gcn

import "github.com/gcnserve/gcnserve/internal/gcnerr"

// Error is a refusal meant for the caller's client: Msg names what is wrong
// (the node, edge, tensor, limit or model). Every layer of gcnserve returns
// this one type, so
//
//	var e *gcn.Error
//	if errors.As(err, &e) && e.Kind == gcn.KindInvalidArgument { ... }
//
// works on errors from the library and from the server's packages alike,
// and the server maps each Kind to exactly one gRPC code and HTTP status.
type Error = gcnerr.Error

// ErrorKind classifies an Error.
type ErrorKind = gcnerr.Kind

// The kinds of Error, with the gRPC code the server answers for each.
const (
	// KindInvalidArgument: the graph breaks the contract (INVALID_ARGUMENT).
	KindInvalidArgument = gcnerr.InvalidArgument
	// KindTooLarge: the graph exceeds a size limit (RESOURCE_EXHAUSTED).
	KindTooLarge = gcnerr.TooLarge
	// KindNotFound: no such model or version (NOT_FOUND).
	KindNotFound = gcnerr.NotFound
	// KindOverloaded: refused for now by admission control; retry later
	// (RESOURCE_EXHAUSTED).
	KindOverloaded = gcnerr.Overloaded
	// KindUnavailable: the model or server is closing (UNAVAILABLE).
	KindUnavailable = gcnerr.Unavailable
	// KindUnauthenticated: missing or wrong credentials (UNAUTHENTICATED).
	KindUnauthenticated = gcnerr.Unauthenticated
)

// Errorf returns an *Error of kind with a formatted message.
func Errorf(kind ErrorKind, format string, args ...any) error {
	return gcnerr.New(kind, format, args...)
}

// ErrClosed answers Predict calls on a closed Model.
var ErrClosed error = &Error{Kind: KindUnavailable, Msg: "model closed"}
