// Package models bundles the small zoo models into the binary, so that
// `ciphercut demo` runs anywhere without a checkout. The larger models stay
// on disk under testsuite/models and are opened from there.
package models

import "embed"

// FS holds cancer-mlp and digits-mlp: model.onnx, inputs.npy, labels.npy,
// expected.npy each.
//
//go:embed cancer-mlp/*.onnx cancer-mlp/*.npy digits-mlp/*.onnx digits-mlp/*.npy
var FS embed.FS
