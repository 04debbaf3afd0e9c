// Package passes holds ciphercut's graph-to-graph rewrites over the tensor IR
// (package ir). Each pass is a plain function func(*ir.Graph) error that
// rewrites the graph in place and leaves it valid for ir.Verify; the compiler
// package lists them, in order, in its pass tables.
//
// The canonicalization passes bring an imported ONNX graph to the small
// vocabulary later stages expect: static shapes (InferShapes), no constant
// subgraphs (FoldConstants), no copies (RemoveIdentity), no dead nodes
// (Prune), batch normalization folded into the preceding layer
// (FoldBatchNorm), fully connected layers as Dense nodes (FuseMatMulAdd), and
// the activations and normalizations that exporters decompose recognized
// again (RecognizeSiLU, RecognizeGELU, RecognizeLayerNorm).
//
// Beyond rewrites, the package holds the analyses the compiler runs on a
// canonical graph: approximation of activations (ApproximateActivations),
// lowering to the CKKS IR (LowerCKKS, ChooseParams, PlaceBootstraps), and
// the split between the data owner and a worker (ChooseSplit, split*.go).
//
// Every rewrite preserves the graph's results as computed by the reference
// interpreter (runtime/plain), up to float64 rounding.
package passes
