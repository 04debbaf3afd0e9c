package ir

import (
	"fmt"
	"sort"
	"strings"
)

// OpInfo describes an operator the IR supports.
type OpInfo struct {
	// Since is the first default-domain opset version in which ciphercut
	// accepts the op (for internal ops, 0).
	Since int64
	// Internal ops are introduced by canonicalization passes, never read from
	// ONNX files.
	Internal bool
	// Doc is a one-line description for listings.
	Doc string
}

// Ops lists every operator the frontend accepts and the reference interpreter
// executes. ONNX ops keep their ONNX names and semantics.
var Ops = map[string]OpInfo{
	// Linear algebra and convolution.
	"Gemm":               {Since: 7, Doc: "alpha*A'*B' + beta*C"},
	"MatMul":             {Since: 7, Doc: "numpy matmul"},
	"Conv":               {Since: 7, Doc: "1-D/2-D convolution with strides, pads, dilations, groups"},
	"BatchNormalization": {Since: 7, Doc: "inference-mode batch normalization"},
	"AveragePool":        {Since: 7, Doc: "average pooling"},
	"GlobalAveragePool":  {Since: 1, Doc: "mean over spatial axes"},
	"MaxPool":            {Since: 7, Doc: "max pooling"},
	"LayerNormalization": {Since: 7, Doc: "layer normalization (opset 17, or recognized from its decomposition)"},
	// Elementwise arithmetic.
	"Add":        {Since: 7, Doc: "broadcast add"},
	"Sub":        {Since: 7, Doc: "broadcast subtract"},
	"Mul":        {Since: 7, Doc: "broadcast multiply"},
	"Div":        {Since: 7, Doc: "broadcast divide"},
	"Pow":        {Since: 7, Doc: "broadcast power"},
	"Sqrt":       {Since: 7, Doc: "square root"},
	"Neg":        {Since: 7, Doc: "negation"},
	"Abs":        {Since: 7, Doc: "absolute value"},
	"Exp":        {Since: 7, Doc: "exponential"},
	"Reciprocal": {Since: 7, Doc: "1/x"},
	"Erf":        {Since: 9, Doc: "error function"},
	"Sum":        {Since: 7, Doc: "variadic broadcast sum"},
	"Min":        {Since: 7, Doc: "variadic broadcast minimum"},
	"Max":        {Since: 7, Doc: "variadic broadcast maximum"},
	"Clip":       {Since: 7, Doc: "clamp to [min, max]"},
	// Activations.
	"Relu":        {Since: 7, Doc: "max(x, 0)"},
	"LeakyRelu":   {Since: 7, Doc: "x or alpha*x"},
	"PRelu":       {Since: 7, Doc: "x or slope*x"},
	"Sigmoid":     {Since: 7, Doc: "logistic function"},
	"HardSigmoid": {Since: 1, Doc: "max(0, min(1, alpha*x+beta))"},
	"Tanh":        {Since: 7, Doc: "hyperbolic tangent"},
	"Softplus":    {Since: 1, Doc: "log(1+exp(x))"},
	"Elu":         {Since: 1, Doc: "exponential linear unit"},
	"Selu":        {Since: 1, Doc: "scaled exponential linear unit"},
	"Gelu":        {Since: 7, Doc: "Gaussian error linear unit (opset 20, or recognized from its erf form)"},
	"Softmax":     {Since: 7, Doc: "softmax along an axis"},
	// Reductions.
	"ReduceMean": {Since: 7, Doc: "mean over axes"},
	"ReduceSum":  {Since: 7, Doc: "sum over axes"},
	// Layout and indexing.
	"Flatten":         {Since: 7, Doc: "reshape to 2-D"},
	"Reshape":         {Since: 7, Doc: "reshape"},
	"Transpose":       {Since: 7, Doc: "permute axes"},
	"Concat":          {Since: 7, Doc: "concatenate along an axis"},
	"Split":           {Since: 7, Doc: "split along an axis"},
	"Pad":             {Since: 7, Doc: "constant, reflect or edge padding"},
	"Squeeze":         {Since: 7, Doc: "remove unit axes"},
	"Unsqueeze":       {Since: 7, Doc: "insert unit axes"},
	"Gather":          {Since: 7, Doc: "index along an axis (embedding tables)"},
	"Slice":           {Since: 7, Doc: "strided slice"},
	"Expand":          {Since: 8, Doc: "broadcast to a shape"},
	"Tile":            {Since: 7, Doc: "repeat along axes"},
	"Where":           {Since: 9, Doc: "select by condition"},
	"Equal":           {Since: 7, Doc: "elementwise equality"},
	"Cast":            {Since: 7, Doc: "change element type"},
	"Shape":           {Since: 7, Doc: "shape of a tensor (folded)"},
	"ConstantOfShape": {Since: 9, Doc: "filled tensor of a given shape"},
	"Range":           {Since: 11, Doc: "arithmetic sequence"},
	"Identity":        {Since: 7, Doc: "copy (removed by canonicalization)"},
	"Dropout":         {Since: 7, Doc: "identity at inference (removed by canonicalization)"},
	"Constant":        {Since: 7, Doc: "constant tensor (becomes a constant value on import)"},
	// Internal ops introduced by canonicalization.
	"SiLU": {Internal: true, Doc: "x*sigmoid(x), recognized from Sigmoid and Mul"},
	"Poly": {Internal: true, Doc: "elementwise polynomial replacing an activation: attributes func (what it approximates), " +
		"a, b (interval), coeffs (Chebyshev basis on [a, b]), max_err (max |p-f| on [a, b])"},
	"Dense": {Internal: true, Doc: "X·W + B over the last axis of X, W constant [K, M], B optional [M] (fused MatMul+Add)"},
}

// OpNames returns the names of the ops accepted from ONNX files, sorted.
func OpNames() []string {
	var names []string
	for name, info := range Ops {
		if !info.Internal {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// UnsupportedError reports an operator, or a variant of one, that ciphercut
// does not support.
type UnsupportedError struct {
	Node   string // node name
	Op     string // op type
	Opset  int64  // default-domain opset of the model
	Reason string // what exactly is unsupported
}

func (e *UnsupportedError) Error() string {
	var msg string
	switch {
	case e.Op != "":
		msg = fmt.Sprintf("unsupported operator %s (opset %d)", e.Op, e.Opset)
		if e.Node != "" {
			msg = fmt.Sprintf("node %q: %s", e.Node, msg)
		}
	case e.Node != "":
		msg = fmt.Sprintf("node %q: unsupported", e.Node)
	default:
		msg = "unsupported"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// CheckOp returns an *UnsupportedError when op, in the given domain and
// opset, is not in Ops; the message lists the supported operators.
func CheckOp(nodeName, domain, op string, opset int64) error {
	info, ok := Ops[op]
	if domain != "" && domain != "ai.onnx" {
		return &UnsupportedError{Node: nodeName, Op: domain + "." + op, Opset: opset,
			Reason: "only the default ONNX domain is supported"}
	}
	if !ok || info.Internal {
		return &UnsupportedError{Node: nodeName, Op: op, Opset: opset,
			Reason: "supported operators: " + strings.Join(OpNames(), ", ")}
	}
	if opset < info.Since {
		return &UnsupportedError{Node: nodeName, Op: op, Opset: opset,
			Reason: fmt.Sprintf("supported from opset %d", info.Since)}
	}
	return nil
}
