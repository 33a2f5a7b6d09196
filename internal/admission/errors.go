package admission

import "fmt"

// Error is a refusal. It stands in for gcn.Errorf(gcn.KindOverloaded, ...)
// until the gcn package lands on main.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// overloaded is the error every refusal returns.
func overloaded(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}
