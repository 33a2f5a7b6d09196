package oip

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"
)

// The REST form gives tensor data as a JSON array of numbers, row-major,
// either flat ([1, 2, 3, 4]) or nested in the tensor's shape
// ([[1, 2], [3, 4]]); both flatten to the same elements. These parsers read
// the array straight into typed slices (encoding/json would box every
// element of a Cora-sized request into an interface).

// parseFloat32Data parses data into float32s. want is the element count the
// shape declares: more elements than that are refused as soon as they show.
func parseFloat32Data(data []byte, want int) ([]float32, error) {
	out := make([]float32, 0, want)
	err := scanNumbers(data, func(i int, tok []byte) error {
		if i >= want {
			return errTooMany
		}
		v, err := strconv.ParseFloat(bytesString(tok), 32)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return fmt.Errorf("element %d: %.40s is out of FP32 range", i, tok)
			}
			return fmt.Errorf("element %d: %.40q is not a number", i, tok)
		}
		out = append(out, float32(v))
		return nil
	})
	return out, tooMany(err, want)
}

// parseIntData parses data into int64s; with int32 set, each must fit INT32.
// Integral values written as floats (2.0, 1e3) are accepted, as JSON does
// not tell integers from floats; fractions are refused.
func parseIntData(data []byte, want int, int32Range bool) ([]int64, error) {
	out := make([]int64, 0, want)
	err := scanNumbers(data, func(i int, tok []byte) error {
		if i >= want {
			return errTooMany
		}
		v, err := strconv.ParseInt(bytesString(tok), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(bytesString(tok), 64)
			if ferr != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
				return fmt.Errorf("element %d: %.40q is not an integer", i, tok)
			}
			v = int64(f)
		}
		if int32Range && (v < math.MinInt32 || v > math.MaxInt32) {
			return fmt.Errorf("element %d: %d does not fit INT32", i, v)
		}
		out = append(out, v)
		return nil
	})
	return out, tooMany(err, want)
}

var errTooMany = errors.New("more elements than the shape declares")

func tooMany(err error, want int) error {
	if errors.Is(err, errTooMany) {
		return fmt.Errorf("more than the %d elements the shape declares", want)
	}
	return err
}

// bytesString views b as a string without copying. The parsers only read
// it during the call; error messages copy what they quote.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// scanNumbers calls fn with each scalar of a JSON array (nested arrays are
// flattened), numbered from 0. data is a JSON value as encoding/json
// validated it, but scanNumbers itself refuses anything that is not a
// well-formed array of arrays and numbers, so it is safe on any bytes.
func scanNumbers(data []byte, fn func(i int, tok []byte) error) error {
	depth, count := 0, 0
	// expectValue is true after '[' or ',': a value (or, after '[', a ']')
	// must come next.
	expectValue := true
	afterOpen := false
	i := 0
	for i < len(data) {
		c := data[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[':
			if !expectValue {
				return fmt.Errorf("malformed array at byte %d", i)
			}
			depth++
			afterOpen = true
			i++
		case c == ']':
			if depth == 0 || (expectValue && !afterOpen) {
				return fmt.Errorf("malformed array at byte %d", i)
			}
			depth--
			expectValue, afterOpen = false, false
			i++
		case c == ',':
			if depth == 0 || expectValue {
				return fmt.Errorf("malformed array at byte %d", i)
			}
			expectValue, afterOpen = true, false
			i++
		case c == '-' || (c >= '0' && c <= '9'):
			if !expectValue || depth == 0 {
				return fmt.Errorf("malformed array at byte %d", i)
			}
			j := i + 1
			for j < len(data) && isNumberByte(data[j]) {
				j++
			}
			if err := fn(count, data[i:j]); err != nil {
				return err
			}
			count++
			expectValue, afterOpen = false, false
			i = j
		default:
			if c == '"' || c == '{' || c == 't' || c == 'f' || c == 'n' {
				return fmt.Errorf("element %d: data must be numbers", count)
			}
			return fmt.Errorf("malformed array at byte %d", i)
		}
		if depth == 0 && !expectValue {
			// The outermost array closed: only whitespace may follow.
			for ; i < len(data); i++ {
				if c := data[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					return fmt.Errorf("malformed array at byte %d", i)
				}
			}
			return nil
		}
	}
	return errors.New("data must be a JSON array of numbers")
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// appendFloat32s appends v as a JSON array; each value is the shortest
// decimal that reads back as the same float32.
func appendFloat32s(b []byte, v []float32) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

// appendInt64s appends v as a JSON array.
func appendInt64s(b []byte, v []int64) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, x, 10)
	}
	return append(b, ']')
}
