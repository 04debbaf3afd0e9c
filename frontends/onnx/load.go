package onnx

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/ir"
)

// Load reads an ONNX model file into a verified, topologically sorted
// graph. See Decode.
func Load(path string) (*ir.Graph, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(data, path)
}

// Decode converts a serialized ONNX ModelProto into a verified, topologically
// sorted graph. name (the file name) starts every error message. Content that
// is valid ONNX but that ciphercut does not support gives an error wrapping
// an *ir.UnsupportedError; any other error means a malformed model. Decode
// never panics.
//
// Graph inputs that are also initializers are constants. Initializers and
// the outputs of Constant nodes become constant values; Constant nodes do not
// appear in the graph. Omitted optional inputs and outputs are nil entries of
// Node.Inputs and Node.Outputs. Unnamed nodes, and nodes whose ONNX name an
// earlier node already has, get generated names such as "Relu_3" (the op
// type and the node's index in the file).
func Decode(data []byte, name string) (g *ir.Graph, err error) {
	defer func() {
		if r := recover(); r != nil {
			g, err = nil, fmt.Errorf("%s: internal error decoding ONNX model: %v", name, r)
		}
	}()
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty file, not an ONNX model", name)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not an ONNX model (invalid protobuf data: %v)", name, err)
	}
	g, err = convertModel(&m, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return g, nil
}

// converter holds the state of one model conversion.
type converter struct {
	opset  int64
	values map[string]*ir.Value
	// origin says where each value name was defined, for error messages.
	origin map[string]string
}

func convertModel(m *onnxpb.ModelProto, file string) (*ir.Graph, error) {
	gp := m.GetGraph()
	if gp == nil {
		if len(m.ProtoReflect().GetUnknown()) > 0 || m.IrVersion == nil {
			return nil, errors.New("not an ONNX model (no graph and no IR version)")
		}
		return nil, errors.New("model has no graph")
	}
	opset := int64(-1)
	for _, imp := range m.OpsetImport {
		if d := imp.GetDomain(); d != "" && d != "ai.onnx" {
			continue
		}
		if opset >= 0 && opset != imp.GetVersion() {
			return nil, fmt.Errorf("conflicting opset imports for the default domain: %d and %d", opset, imp.GetVersion())
		}
		opset = imp.GetVersion()
	}
	if opset < 0 {
		return nil, fmt.Errorf("model imports no opset of the default ONNX domain (IR version %d)", m.GetIrVersion())
	}
	if opset < 1 {
		return nil, fmt.Errorf("invalid opset version %d for the default ONNX domain", opset)
	}
	functions := map[string]bool{}
	for _, f := range m.Functions {
		functions[f.GetDomain()+"\x00"+f.GetName()] = true
	}
	if len(gp.SparseInitializer) > 0 {
		return nil, unsupportedf("sparse initializer %q is not supported", gp.SparseInitializer[0].GetValues().GetName())
	}

	c := &converter{opset: opset, values: map[string]*ir.Value{}, origin: map[string]string{}}
	g := &ir.Graph{Name: gp.GetName(), Opset: opset}
	if g.Name == "" {
		g.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}

	// Initializers are constants.
	for _, tp := range gp.Initializer {
		name := tp.GetName()
		if name == "" {
			return nil, errors.New("initializer without a name")
		}
		if err := c.define(name, "an initializer"); err != nil {
			return nil, err
		}
		t, err := tensorFromProto(tp)
		if err != nil {
			return nil, wrapf(err, "initializer %q", name)
		}
		c.values[name] = &ir.Value{Name: name, DType: t.DType, Shape: t.Shape.Clone(), Const: t}
	}

	// Graph inputs, except those that are initializers (older exporters list
	// every initializer as an input too).
	for i, vi := range gp.Input {
		name := vi.GetName()
		if name == "" {
			return nil, fmt.Errorf("graph input %d has no name", i)
		}
		if v, ok := c.values[name]; ok && v.IsConst() && c.origin[name] == "an initializer" {
			continue
		}
		if err := c.define(name, "a graph input"); err != nil {
			return nil, err
		}
		v := &ir.Value{Name: name}
		if vi.GetType() == nil {
			return nil, fmt.Errorf("graph input %q has no type", name)
		}
		if err := setType(v, vi.GetType()); err != nil {
			return nil, wrapf(err, "graph input %q", name)
		}
		if v.DType == ir.Undefined {
			return nil, fmt.Errorf("graph input %q has no element type", name)
		}
		c.values[name] = v
		g.Inputs = append(g.Inputs, v)
	}

	// Name the nodes and create every node output, so that inputs can be
	// resolved whatever the order of the nodes in the file.
	names := nodeNames(gp.Node)
	for i, np := range gp.Node {
		if np.GetOpType() == "" {
			return nil, fmt.Errorf("node %d %q has no op type", i, np.GetName())
		}
		for _, out := range np.Output {
			if out == "" {
				continue
			}
			if err := c.define(out, fmt.Sprintf("node %q", names[i])); err != nil {
				return nil, err
			}
			c.values[out] = &ir.Value{Name: out}
		}
	}

	// Types recorded for intermediate values (node outputs only).
	for _, vi := range gp.ValueInfo {
		v, ok := c.values[vi.GetName()]
		if !ok || !strings.HasPrefix(c.origin[vi.GetName()], "node ") || vi.GetType() == nil {
			continue
		}
		if err := setType(v, vi.GetType()); err != nil {
			return nil, wrapf(err, "value %q", vi.GetName())
		}
	}

	for i, np := range gp.Node {
		n := &ir.Node{Name: names[i], Op: np.GetOpType()}
		domain := np.GetDomain()
		if functions[domain+"\x00"+n.Op] {
			return nil, &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: opset,
				Reason: "model-local functions (FunctionProto) are not supported; export without local functions"}
		}
		if err := ir.CheckOp(n.Name, domain, n.Op, opset); err != nil {
			return nil, err
		}
		attrs, err := convertAttrs(np, n, opset)
		if err != nil {
			return nil, err
		}
		n.Attrs = attrs
		if n.Op == "Constant" {
			if err := c.constant(np, n); err != nil {
				return nil, err
			}
			continue
		}
		n.Inputs = make([]*ir.Value, len(np.Input))
		for j, in := range np.Input {
			if in == "" {
				continue
			}
			v, ok := c.values[in]
			if !ok {
				return nil, fmt.Errorf("%v: input %d %q is not defined (no graph input, initializer or node output has that name)", n, j, in)
			}
			n.Inputs[j] = v
		}
		n.Outputs = make([]*ir.Value, len(np.Output))
		for j, out := range np.Output {
			if out == "" {
				continue
			}
			v := c.values[out]
			v.Producer = n
			n.Outputs[j] = v
		}
		g.Nodes = append(g.Nodes, n)
	}

	for i, vi := range gp.Output {
		name := vi.GetName()
		if name == "" {
			return nil, fmt.Errorf("graph output %d has no name", i)
		}
		v, ok := c.values[name]
		if !ok {
			return nil, fmt.Errorf("graph output %q is not defined (no graph input, initializer or node output has that name)", name)
		}
		if tp := vi.GetType(); tp != nil {
			if v.IsConst() {
				// The constant's own type is authoritative; still refuse
				// types ciphercut cannot represent.
				if err := setType(&ir.Value{}, tp); err != nil {
					return nil, wrapf(err, "graph output %q", name)
				}
			} else if err := setType(v, tp); err != nil {
				return nil, wrapf(err, "graph output %q", name)
			}
		}
		g.Outputs = append(g.Outputs, v)
	}

	if err := g.Sort(); err != nil {
		return nil, err
	}
	if err := ir.Verify(g); err != nil {
		return nil, err
	}
	return g, nil
}

// define records that name is defined by what, refusing a second definition.
func (c *converter) define(name, what string) error {
	if prev, ok := c.origin[name]; ok {
		return fmt.Errorf("value %q is defined twice: by %s and by %s", name, prev, what)
	}
	c.origin[name] = what
	return nil
}

// constant turns the Constant node n into constant data on its output value.
func (c *converter) constant(np *onnxpb.NodeProto, n *ir.Node) error {
	if len(np.Input) != 0 {
		return fmt.Errorf("%v: Constant takes no inputs, has %d", n, len(np.Input))
	}
	if len(np.Output) != 1 || np.Output[0] == "" {
		return fmt.Errorf("%v: Constant must have one named output", n)
	}
	if len(n.Attrs) != 1 {
		return fmt.Errorf("%v: Constant must have exactly one value attribute, has %d", n, len(n.Attrs))
	}
	var t *ir.Tensor
	for name, a := range n.Attrs {
		switch {
		case name == "value" && a.Kind == ir.AttrTensor:
			t = a.Tensor
		case name == "value_float" && a.Kind == ir.AttrFloat:
			t = ir.NewFloat(ir.Shape{}, []float64{a.Float})
		case name == "value_floats" && a.Kind == ir.AttrFloats:
			t = ir.NewFloat(ir.Shape{len(a.Floats)}, append([]float64{}, a.Floats...))
		case name == "value_int" && a.Kind == ir.AttrInt:
			t = ir.NewInt(ir.Shape{}, []int64{a.Int})
		case name == "value_ints" && a.Kind == ir.AttrInts:
			t = ir.NewInt(ir.Shape{len(a.Ints)}, append([]int64{}, a.Ints...))
		case name == "value_string" || name == "value_strings":
			return &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: c.opset,
				Reason: "string constants (" + name + ") are not supported"}
		default:
			return fmt.Errorf("%v: unexpected attribute %q", n, name)
		}
	}
	v := c.values[np.Output[0]]
	v.Const, v.DType, v.Shape, v.DimNames = t, t.DType, t.Shape.Clone(), nil
	return nil
}

// setType sets v's element type and shape from an ONNX type, which must be a
// tensor type. An UNDEFINED element type leaves v.DType unchanged; a missing
// shape leaves v.Shape unchanged.
func setType(v *ir.Value, tp *onnxpb.TypeProto) error {
	var tt *onnxpb.TypeProto_Tensor
	switch x := tp.Value.(type) {
	case *onnxpb.TypeProto_TensorType:
		tt = x.TensorType
	case *onnxpb.TypeProto_SequenceType:
		return unsupportedf("sequence types are not supported")
	case *onnxpb.TypeProto_OptionalType:
		return unsupportedf("optional types are not supported")
	case *onnxpb.TypeProto_MapType:
		return unsupportedf("map types are not supported")
	case *onnxpb.TypeProto_SparseTensorType:
		return unsupportedf("sparse tensor types are not supported")
	default:
		return errors.New("type is not set")
	}
	if tt == nil {
		return errors.New("tensor type is empty")
	}
	dt, err := irDType(tt.GetElemType())
	if err != nil {
		return err
	}
	if dt != ir.Undefined {
		v.DType = dt
	}
	if tt.Shape == nil {
		return nil
	}
	shape := make(ir.Shape, len(tt.Shape.Dim))
	var dimNames []string
	for i, d := range tt.Shape.Dim {
		shape[i] = -1
		switch x := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			if x.DimValue >= 0 {
				shape[i] = int(x.DimValue)
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			if x.DimParam != "" {
				if dimNames == nil {
					dimNames = make([]string, len(tt.Shape.Dim))
				}
				dimNames[i] = x.DimParam
			}
		}
	}
	v.Shape, v.DimNames = shape, dimNames
	return nil
}

// nodeNames returns a unique name for each node: its ONNX name, or for
// unnamed nodes and repeated names a generated one such as "Relu_3".
func nodeNames(nodes []*onnxpb.NodeProto) []string {
	taken := map[string]bool{}
	names := make([]string, len(nodes))
	for i, np := range nodes {
		if s := np.GetName(); s != "" && !taken[s] {
			taken[s] = true
			names[i] = s
		}
	}
	for i, np := range nodes {
		if names[i] != "" {
			continue
		}
		base := fmt.Sprintf("%s_%d", np.GetOpType(), i)
		if np.GetName() != "" {
			base = fmt.Sprintf("%s_%d", np.GetName(), i)
		}
		s := base
		for k := 2; taken[s]; k++ {
			s = fmt.Sprintf("%s_%d", base, k)
		}
		taken[s] = true
		names[i] = s
	}
	return names
}
