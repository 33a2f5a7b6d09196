package modelrepo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Policy says which versions of a model are served. The zero value is
// "latest" (the highest version only).
//
// Syntax, shared by the --version-policy flag and a model's version_policy
// file:
//
//	latest          the highest version (the default)
//	latest:N        the N highest versions, N >= 1
//	all             every version
//	specific:1,3    exactly versions 1 and 3 (those present)
type Policy struct {
	kind     policyKind
	n        int     // latest:N
	versions []int64 // specific, ascending, no duplicates
}

type policyKind int

const (
	policyLatest policyKind = iota
	policyAll
	policySpecific
)

// ParsePolicy reads a policy in the syntax documented on Policy. Surrounding
// space is ignored.
func ParsePolicy(s string) (Policy, error) {
	s = strings.TrimSpace(s)
	kind, arg, hasArg := strings.Cut(s, ":")
	switch {
	case kind == "latest" && !hasArg:
		return Policy{}, nil
	case kind == "latest":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			return Policy{}, fmt.Errorf("version policy %q: latest:N wants a positive integer N", s)
		}
		return Policy{kind: policyLatest, n: n}, nil
	case kind == "all" && !hasArg:
		return Policy{kind: policyAll}, nil
	case kind == "specific" && hasArg:
		var vs []int64
		for _, f := range strings.Split(arg, ",") {
			v, ok := parseVersion(strings.TrimSpace(f))
			if !ok {
				return Policy{}, fmt.Errorf("version policy %q: %q is not a positive integer version", s, f)
			}
			vs = append(vs, v)
		}
		slices.Sort(vs)
		return Policy{kind: policySpecific, versions: slices.Compact(vs)}, nil
	}
	//lint:ignore ST1005 the trailing "..." is part of the syntax shown (specific:V1,V2,...), not punctuation
	return Policy{}, fmt.Errorf("version policy %q: want latest, latest:N, all or specific:V1,V2,...", s)
}

// String returns the policy in the syntax ParsePolicy reads.
func (p Policy) String() string {
	switch p.kind {
	case policyAll:
		return "all"
	case policySpecific:
		parts := make([]string, len(p.versions))
		for i, v := range p.versions {
			parts[i] = strconv.FormatInt(v, 10)
		}
		return "specific:" + strings.Join(parts, ",")
	}
	if p.n > 1 {
		return "latest:" + strconv.Itoa(p.n)
	}
	return "latest"
}

// Select returns the versions of available (ascending, no duplicates) that
// the policy serves, ascending.
func (p Policy) Select(available []int64) []int64 {
	switch p.kind {
	case policyAll:
		return slices.Clone(available)
	case policySpecific:
		var out []int64
		for _, v := range available {
			if _, ok := slices.BinarySearch(p.versions, v); ok {
				out = append(out, v)
			}
		}
		return out
	}
	n := max(p.n, 1)
	return slices.Clone(available[max(len(available)-n, 0):])
}

// parseVersion reads a version directory name: a positive decimal integer
// without sign or leading zeros, so that each version has one spelling.
func parseVersion(s string) (int64, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}
