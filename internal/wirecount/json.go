package wirecount

import (
	"encoding/json"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxJSONDepth is how deep CountJSON follows message fields; deeper
// values are skipped uncounted (protojson's own limit refuses them).
const maxJSONDepth = 64

// CountJSON counts the elements of md's repeated fields in body, the
// protojson of an md, by the same paths as Count, before protojson builds
// any: a field is named by its proto name or its JSON name, as protojson
// accepts both. Only Elements is set (the decoded size of JSON bodies is
// bounded by their token counts, httpx.CountJSON). It never fails: on
// bytes that are not md's JSON, it counts what it read before the first
// malformed byte, which is at most what protojson builds before giving up.
// It allocates nothing per element: a key is decoded only when it holds an
// escape.
func CountJSON(body []byte, md protoreflect.MessageDescriptor) Counts {
	c := Counts{elements: make(map[string]int64), paths: make(map[fieldAt]fieldPath)}
	s := jsonScan{b: body, c: &c}
	s.space()
	if s.peek() == '{' {
		s.object(md, "", 0)
	}
	return c
}

// jsonScan reads a JSON text from b[i:]; a method returns false at the
// first byte that does not fit, and scanning stops.
type jsonScan struct {
	b []byte
	i int
	c *Counts
}

func (s *jsonScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string at b[i] (its opening quote) and returns its bytes
// between the quotes, escapes as written, and whether it holds any.
func (s *jsonScan) str() (raw []byte, escaped, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			s.i = j + 1
			return s.b[start:j], escaped, true
		}
	}
	return nil, false, false
}

// skip reads one value of any kind without looking inside it: nesting is
// followed by a depth count, not by recursion, so a million nested arrays
// cost nothing.
func (s *jsonScan) skip() bool {
	depth := 0
	for {
		s.space()
		switch s.peek() {
		case 0:
			return false
		case '"':
			if _, _, ok := s.str(); !ok {
				return false
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			depth--
			s.i++
			if depth < 0 {
				return false
			}
		case ',', ':':
			if depth == 0 {
				return false
			}
			s.i++
			continue
		default: // a number or a literal: up to the next delimiter
			for s.i < len(s.b) && !isDelimiter(s.b[s.i]) {
				s.i++
			}
		}
		if depth == 0 {
			return true
		}
	}
}

func isDelimiter(b byte) bool {
	switch b {
	case ',', ':', '{', '}', '[', ']', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// field resolves a key of md's object to its field, by proto name or JSON
// name; nil when md has no such field. The key is compared in place (no
// string is made of it) unless it holds an escape.
func field(md protoreflect.MessageDescriptor, raw []byte, escaped bool) protoreflect.FieldDescriptor {
	if escaped {
		var name string
		if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &name); err != nil {
			return nil
		}
		raw = []byte(name)
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if string(raw) == string(fd.Name()) || string(raw) == fd.JSONName() {
			return fd
		}
	}
	return nil
}

// object reads an object of md at b[i] (its '{'), counting the elements
// of its repeated fields under prefix, and following its message fields.
func (s *jsonScan) object(md protoreflect.MessageDescriptor, prefix string, depth int) bool {
	s.i++ // '{'
	s.space()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.space()
		raw, escaped, ok := s.str()
		if !ok {
			return false
		}
		s.space()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.space()
		fd := field(md, raw, escaped)
		switch {
		case fd == nil || fd.IsMap() || depth >= maxJSONDepth:
			ok = s.skip()
		case fd.IsList():
			ok = s.list(fd, s.c.pathOf(prefix, fd), depth)
		case fd.Kind() == protoreflect.MessageKind && s.peek() == '{':
			ok = s.object(fd.Message(), s.c.pathOf(prefix, fd).prefix, depth+1)
		default:
			ok = s.skip()
		}
		if !ok {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// list reads the value of repeated field fd: an array, each element
// counted at path (and, for messages, followed), or anything else
// (null) skipped.
func (s *jsonScan) list(fd protoreflect.FieldDescriptor, path fieldPath, depth int) bool {
	if s.peek() != '[' {
		return s.skip()
	}
	s.i++
	s.space()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		s.space()
		var ok bool
		if fd.Kind() == protoreflect.MessageKind && s.peek() == '{' {
			ok = s.object(fd.Message(), path.prefix, depth+1)
		} else {
			ok = s.skip()
		}
		if !ok {
			return false
		}
		s.c.elements[path.path]++
		s.space()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}
