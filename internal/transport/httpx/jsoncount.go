package httpx

// JSONCounts are the tokens of a JSON text, counted in one pass over its
// bytes before any decoder allocates for them: what a decoder can build
// from a body is bounded by these counts, whatever the body says.
type JSONCounts struct {
	Bytes       int64 // the text's length
	Objects     int64 // '{'
	Arrays      int64 // '['
	Strings     int64 // strings, object keys included
	StringBytes int64 // bytes inside the strings' quotes
	Scalars     int64 // numbers, true, false and null
}

// CountJSON counts the tokens of data. It never fails: on bytes that are
// not JSON the counts still cover every token a decoder could read before
// it gives up (each token counted once, at its first byte).
func CountJSON(data []byte) JSONCounts {
	c := JSONCounts{Bytes: int64(len(data))}
	inString, escaped, inScalar := false, false, false
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
				c.StringBytes++
			case b == '\\':
				escaped = true
				c.StringBytes++
			case b == '"':
				inString = false
			default:
				c.StringBytes++
			}
			continue
		}
		switch b {
		case '"':
			inString, inScalar = true, false
			c.Strings++
		case '{':
			c.Objects++
			inScalar = false
		case '[':
			c.Arrays++
			inScalar = false
		case '}', ']', ',', ':', ' ', '\t', '\n', '\r':
			inScalar = false
		default:
			// A number or literal starts at the first byte after a
			// delimiter; the rest of its bytes belong to it.
			if !inScalar {
				c.Scalars++
				inScalar = true
			}
		}
	}
	return c
}

// The decoded-memory bounds below were measured as upper bounds of all the
// memory the decoders allocate (runtime.MemStats.TotalAlloc, garbage
// included) on bodies built to amplify (httpjson's
// TestGraphBytesBoundsDecoding and oip's TestRESTInferBytesBoundsDecoding
// check them): a 3-byte "{}," becomes a whole message struct,
// a 2-byte "0," an 8-byte element in a slice that doubles as it grows.

// GraphBytes bounds the memory a POST /v1/process-graph body (the protojson
// of GraphData) holds while it is decoded and turned into tensors
// (protojson.Unmarshal, then graphwire.FromMessage), the body included.
func (c JSONCounts) GraphBytes() int64 {
	return 2*c.Bytes + 320*c.Objects + 64*c.Arrays + 48*c.Strings + 3*c.StringBytes + 64*c.Scalars
}

// RESTInferBytes bounds the memory an Open Inference Protocol REST
// inference body (JSON form) holds while it is decoded into tensors, the
// body included.
func (c JSONCounts) RESTInferBytes() int64 {
	return 3*c.Bytes + 640*c.Objects + 64*c.Arrays + 48*c.Strings + 3*c.StringBytes + 16*c.Scalars
}
