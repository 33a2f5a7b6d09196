package oip

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"
)

// The REST form gives tensor data as a JSON array of numbers, row-major,
// either flat ([1, 2, 3, 4]) or nested exactly as the tensor's shape
// ([[1, 2], [3, 4]] for [2, 2]); both give the same elements. Nested data
// must match the shape at every level: ragged rows ([[1, 2, 3], [4]]) are
// refused naming the row, even when the total is right. These parsers read
// the array straight into typed slices (encoding/json would box every
// element of a Cora-sized request into an interface).

// parseFloat32Data parses data into float32s. want is the element count the
// shape declares: more elements than that are refused as soon as they show.
func parseFloat32Data(data []byte, shape []int64, want int) ([]float32, error) {
	out := make([]float32, 0, want)
	err := scanNumbers(data, shape, func(i int, tok []byte) error {
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
func parseIntData(data []byte, shape []int64, want int, int32Range bool) ([]int64, error) {
	out := make([]int64, 0, want)
	err := scanNumbers(data, shape, func(i int, tok []byte) error {
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

// scanNumbers calls fn with each scalar of a JSON array, numbered from 0:
// a flat array, or arrays nested as shape says (each array at depth d has
// shape[d-1] elements, numbers only at depth len(shape)). data is a JSON
// value as encoding/json validated it, but scanNumbers itself refuses
// anything that is not a well-formed array of arrays and numbers, so it is
// safe on any bytes.
func scanNumbers(data []byte, shape []int64, fn func(i int, tok []byte) error) error {
	depth, count := 0, 0
	// lens[d] counts the elements of the open array at depth d+1; nested
	// is set once the outer array holds an array.
	var lens []int64
	nested := false
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
			if depth > 0 {
				if depth == 1 && !nested && lens[0] > 0 {
					return fmt.Errorf("row %s: an array among numbers: data is either flat or nested as shape %s", rowPath(lens[:1]), formatShape(shape))
				}
				nested = true
				if depth >= len(shape) {
					return fmt.Errorf("row %s: arrays nest deeper than shape %s", rowPath(lens), formatShape(shape))
				}
				if lens[depth-1] >= shape[depth-1] {
					return tooLong(lens[:depth], shape, depth)
				}
				lens[depth-1]++
			}
			depth++
			lens = append(lens, 0)
			afterOpen = true
			i++
		case c == ']':
			if depth == 0 || (expectValue && !afterOpen) {
				return fmt.Errorf("malformed array at byte %d", i)
			}
			if nested && lens[depth-1] != shape[depth-1] {
				if depth == 1 {
					return fmt.Errorf("%d rows, shape %s wants %d", lens[0], formatShape(shape), shape[0])
				}
				return fmt.Errorf("row %s has %d values, shape %s wants %d", rowPath(lens[:depth-1]), lens[depth-1], formatShape(shape), shape[depth-1])
			}
			lens = lens[:depth-1]
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
			if nested && depth != len(shape) {
				return fmt.Errorf("row %s: a number where shape %s wants an array", rowPath(lens[:depth]), formatShape(shape))
			}
			if nested && lens[depth-1] >= shape[depth-1] {
				return tooLong(lens[:depth], shape, depth)
			}
			lens[depth-1]++
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

// tooLong says that the array at depth holds more than the shape wants.
func tooLong(lens, shape []int64, depth int) error {
	if depth == 1 {
		return fmt.Errorf("more than the %d rows shape %s wants", shape[0], formatShape(shape))
	}
	return fmt.Errorf("row %s has more than the %d values shape %s wants", rowPath(lens[:depth-1]), shape[depth-1], formatShape(shape))
}

// rowPath names the row that the open arrays' element counts lead to:
// [1] for the second row, [0][2] one level deeper (0-based, as in the
// shape's row-major order).
func rowPath(lens []int64) string {
	b := make([]byte, 0, 8*len(lens))
	for _, n := range lens {
		b = append(b, '[')
		b = strconv.AppendInt(b, max(n-1, 0), 10)
		b = append(b, ']')
	}
	return string(b)
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// appendFloat32s appends v as a JSON array; each value is the shortest
// decimal that reads back as the same float32. JSON has no NaN or infinity:
// a model that outputs one gets the strings "NaN", "Infinity" and
// "-Infinity" in its place, as protojson writes them on /v1/process-graph,
// rather than a body no JSON parser accepts.
func appendFloat32s(b []byte, v []float32) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		switch f := float64(x); {
		case math.IsNaN(f):
			b = append(b, `"NaN"`...)
		case math.IsInf(f, 1):
			b = append(b, `"Infinity"`...)
		case math.IsInf(f, -1):
			b = append(b, `"-Infinity"`...)
		default:
			b = strconv.AppendFloat(b, f, 'g', -1, 32)
		}
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
