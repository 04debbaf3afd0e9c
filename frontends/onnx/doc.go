// Package onnx reads ONNX models into ciphercut's tensor IR (package ir).
//
// Load and Decode turn a serialized ModelProto, as PyTorch 1.13/2.x and ONNX
// 1.12+ write them (opsets 7 to 18; ir.Ops says from which opset each operator
// is accepted), into an *ir.Graph: graph inputs and outputs with their element
// types and shapes (symbolic dimensions are -1 and keep their names in
// ir.Value.DimNames), initializers and Constant nodes as constant values, and
// one ir.Node per remaining ONNX node, checked with ir.CheckOp, topologically
// sorted and verified with ir.Verify. Valid content that ciphercut does not
// handle (operators outside ir.Ops, other operator domains, model-local
// functions, subgraphs, string, bfloat16, complex or unsigned 16/32/64-bit
// tensors, sequence and optional types, sparse or external tensor data) is
// reported as an error wrapping an *ir.UnsupportedError, so callers can tell
// it apart from a malformed file with errors.As. Every error message starts
// with the file name, and no input makes the decoder panic.
//
// ReadTensorFile, WriteTensorFile, DecodeTensor, TensorFromProto and
// TensorToProto convert between serialized ONNX TensorProtos (the .pb files of
// the ONNX backend test data sets) and ir.Tensor.
//
// The protobuf schema lives in the generated package onnxpb (the official
// onnx.proto); it is regenerated with
//
//	go generate ./frontends/onnx/onnxpb
package onnx
