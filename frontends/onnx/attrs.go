package onnx

import (
	"errors"
	"fmt"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/ir"
)

// attrType returns the attribute's type, inferred from the field that is set
// when the type field is missing (as in models older than IR version 3).
func attrType(a *onnxpb.AttributeProto) onnxpb.AttributeProto_AttributeType {
	if a.Type != nil {
		return a.GetType()
	}
	switch {
	case a.F != nil:
		return onnxpb.AttributeProto_FLOAT
	case a.I != nil:
		return onnxpb.AttributeProto_INT
	case a.S != nil:
		return onnxpb.AttributeProto_STRING
	case a.T != nil:
		return onnxpb.AttributeProto_TENSOR
	case a.G != nil:
		return onnxpb.AttributeProto_GRAPH
	case a.SparseTensor != nil:
		return onnxpb.AttributeProto_SPARSE_TENSOR
	case a.Tp != nil:
		return onnxpb.AttributeProto_TYPE_PROTO
	case len(a.Floats) > 0:
		return onnxpb.AttributeProto_FLOATS
	case len(a.Ints) > 0:
		return onnxpb.AttributeProto_INTS
	case len(a.Strings) > 0:
		return onnxpb.AttributeProto_STRINGS
	case len(a.Tensors) > 0:
		return onnxpb.AttributeProto_TENSORS
	case len(a.Graphs) > 0:
		return onnxpb.AttributeProto_GRAPHS
	case len(a.SparseTensors) > 0:
		return onnxpb.AttributeProto_SPARSE_TENSORS
	case len(a.TypeProtos) > 0:
		return onnxpb.AttributeProto_TYPE_PROTOS
	}
	return onnxpb.AttributeProto_UNDEFINED
}

// convertAttrs converts the attributes of the ONNX node that becomes n (whose
// Name and Op are set). Attribute kinds the IR lacks (graphs, sparse tensors,
// type protos, tensor lists, references to function attributes) give an
// *ir.UnsupportedError naming the node.
func convertAttrs(np *onnxpb.NodeProto, n *ir.Node, opset int64) (ir.Attrs, error) {
	attrs := make(ir.Attrs, len(np.Attribute))
	for _, a := range np.Attribute {
		if a == nil {
			continue
		}
		name := a.GetName()
		if name == "" {
			return nil, fmt.Errorf("%v: attribute without a name", n)
		}
		if _, dup := attrs[name]; dup {
			return nil, fmt.Errorf("%v: attribute %q given twice", n, name)
		}
		unsupported := func(what string) error {
			return &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: opset,
				Reason: fmt.Sprintf("attribute %q %s is not supported", name, what)}
		}
		if a.GetRefAttrName() != "" {
			return nil, unsupported(fmt.Sprintf("refers to function attribute %q, which", a.GetRefAttrName()))
		}
		var v ir.Attr
		switch typ := attrType(a); typ {
		case onnxpb.AttributeProto_FLOAT:
			v = ir.Attr{Kind: ir.AttrFloat, Float: float64(a.GetF())}
		case onnxpb.AttributeProto_INT:
			v = ir.Attr{Kind: ir.AttrInt, Int: a.GetI()}
		case onnxpb.AttributeProto_STRING:
			v = ir.Attr{Kind: ir.AttrString, String: string(a.S)}
		case onnxpb.AttributeProto_FLOATS:
			fs := make([]float64, len(a.Floats))
			for i, f := range a.Floats {
				fs[i] = float64(f)
			}
			v = ir.Attr{Kind: ir.AttrFloats, Floats: fs}
		case onnxpb.AttributeProto_INTS:
			v = ir.Attr{Kind: ir.AttrInts, Ints: append([]int64{}, a.Ints...)}
		case onnxpb.AttributeProto_STRINGS:
			ss := make([]string, len(a.Strings))
			for i, s := range a.Strings {
				ss[i] = string(s)
			}
			v = ir.Attr{Kind: ir.AttrStrings, Strings: ss}
		case onnxpb.AttributeProto_TENSOR:
			if a.T == nil {
				return nil, fmt.Errorf("%v: attribute %q of type TENSOR has no tensor", n, name)
			}
			t, err := tensorFromProto(a.T)
			if err != nil {
				var ue *ir.UnsupportedError
				if errors.As(err, &ue) {
					ue.Node, ue.Op, ue.Opset = n.Name, n.Op, opset
				}
				return nil, wrapf(err, "%v: attribute %q", n, name)
			}
			v = ir.Attr{Kind: ir.AttrTensor, Tensor: t}
		case onnxpb.AttributeProto_GRAPH, onnxpb.AttributeProto_GRAPHS:
			return nil, unsupported("holds a subgraph (" + typ.String() + "), which")
		case onnxpb.AttributeProto_SPARSE_TENSOR, onnxpb.AttributeProto_SPARSE_TENSORS,
			onnxpb.AttributeProto_TYPE_PROTO, onnxpb.AttributeProto_TYPE_PROTOS,
			onnxpb.AttributeProto_TENSORS:
			return nil, unsupported("of type " + typ.String() + ", which")
		case onnxpb.AttributeProto_UNDEFINED:
			return nil, fmt.Errorf("%v: attribute %q has no value", n, name)
		default:
			return nil, fmt.Errorf("%v: attribute %q has invalid type %d", n, name, int32(typ))
		}
		attrs[name] = v
	}
	return attrs, nil
}
