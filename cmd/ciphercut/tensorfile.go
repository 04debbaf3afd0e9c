package main

import (
	"fmt"
	"strings"

	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
)

// readTensor reads a .npy or ONNX TensorProto .pb file, by extension.
func readTensor(path string) (*ir.Tensor, error) {
	switch {
	case strings.HasSuffix(path, ".npy"):
		return npy.Read(path)
	case strings.HasSuffix(path, ".pb"):
		t, _, err := onnx.ReadTensorFile(path)
		return t, err
	}
	return nil, fmt.Errorf("%s: unknown tensor file type (want .npy or .pb)", path)
}

// writeTensor writes a .npy or ONNX TensorProto .pb file, by extension,
// atomically.
func writeTensor(path, name string, t *ir.Tensor) error {
	switch {
	case strings.HasSuffix(path, ".npy"):
		return npy.Write(path, t)
	case strings.HasSuffix(path, ".pb"):
		return onnx.WriteTensorFile(path, t, name)
	}
	return fmt.Errorf("%s: unknown tensor file type (want .npy or .pb)", path)
}
