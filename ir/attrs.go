package ir

import (
	"fmt"
	"sort"
	"strings"
)

// AttrKind says which field of an Attr is set.
type AttrKind uint8

// Attribute kinds, as in ONNX.
const (
	AttrInt AttrKind = iota + 1
	AttrFloat
	AttrString
	AttrInts
	AttrFloats
	AttrStrings
	AttrTensor
)

// Attr is one node attribute.
type Attr struct {
	Kind    AttrKind
	Int     int64
	Float   float64
	String  string
	Ints    []int64
	Floats  []float64
	Strings []string
	Tensor  *Tensor
}

// Attrs maps attribute names to values.
type Attrs map[string]Attr

// Int returns the integer attribute name, or def when absent.
func (a Attrs) Int(name string, def int64) int64 {
	if v, ok := a[name]; ok && v.Kind == AttrInt {
		return v.Int
	}
	return def
}

// Float returns the float attribute name, or def when absent.
func (a Attrs) Float(name string, def float64) float64 {
	if v, ok := a[name]; ok && v.Kind == AttrFloat {
		return v.Float
	}
	return def
}

// String returns the string attribute name, or def when absent.
func (a Attrs) String(name string, def string) string {
	if v, ok := a[name]; ok && v.Kind == AttrString {
		return v.String
	}
	return def
}

// Ints returns the integer-list attribute name, or def when absent.
func (a Attrs) Ints(name string, def []int64) []int64 {
	if v, ok := a[name]; ok && v.Kind == AttrInts {
		return v.Ints
	}
	return def
}

// Floats returns the float-list attribute name, or def when absent.
func (a Attrs) Floats(name string, def []float64) []float64 {
	if v, ok := a[name]; ok && v.Kind == AttrFloats {
		return v.Floats
	}
	return def
}

// Has reports whether the attribute is present.
func (a Attrs) Has(name string) bool { _, ok := a[name]; return ok }

// Summary renders the attributes compactly and deterministically, for dumps.
func (a Attrs) Summary() string {
	if len(a) == 0 {
		return ""
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := a[k]
		var s string
		switch v.Kind {
		case AttrInt:
			s = fmt.Sprint(v.Int)
		case AttrFloat:
			s = fmt.Sprintf("%g", v.Float)
		case AttrString:
			s = fmt.Sprintf("%q", v.String)
		case AttrInts:
			s = fmt.Sprint(v.Ints)
		case AttrFloats:
			s = fmt.Sprint(v.Floats)
		case AttrStrings:
			s = fmt.Sprint(v.Strings)
		case AttrTensor:
			s = "tensor" + v.Tensor.Shape.String()
		}
		parts = append(parts, k+"="+s)
	}
	return strings.Join(parts, " ")
}
