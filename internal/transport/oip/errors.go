package oip

import (
	"errors"

	"github.com/gcnserve/gcnserve/gcn"
)

func invalidf(format string, args ...any) error {
	return gcn.Errorf(gcn.KindInvalidArgument, format, args...)
}

func tooLargef(format string, args ...any) error {
	return gcn.Errorf(gcn.KindTooLarge, format, args...)
}

// isUnavailable reports whether err says the model exists but cannot serve
// now (loading, draining).
func isUnavailable(err error) bool {
	var e *gcn.Error
	return errors.As(err, &e) && e.Kind == gcn.KindUnavailable
}
