package gcnerr

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxEcho is the most bytes of a client-provided string that an error
// message or a log line repeats.
const MaxEcho = 256

// maxMessage is the most bytes of a message a client or the log gets:
// messages that echo several client strings, each cut to MaxEcho, fit.
const maxMessage = 4 << 10

// Echo quotes a client-provided string (a model name, an id, a tensor
// name) for an error message or a log line: all of it when it is at most
// MaxEcho bytes, else its first MaxEcho bytes (cut at a character
// boundary) and its full length, so a megabyte of input never becomes a
// megabyte of error or log. Every place that repeats client input uses it.
func Echo(s string) string {
	if len(s) <= MaxEcho {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cutAt(s, MaxEcho)]), len(s))
}

// Clip bounds a whole message built from client input (the last line of
// defence behind Echo): at most 4 KiB, with the full length when cut.
func Clip(msg string) string {
	if len(msg) <= maxMessage {
		return msg
	}
	return fmt.Sprintf("%s... (message of %d bytes cut)", msg[:cutAt(msg, maxMessage)], len(msg))
}

// cutAt returns n, moved back to the start of a UTF-8 character.
func cutAt(s string, n int) int {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}
