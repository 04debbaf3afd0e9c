// Package onnxpb is the official ONNX protobuf schema (onnx.proto from ONNX 1.12,
// as shipped by Debian's python3-onnx) compiled to Go with Debian's protoc and
// protoc-gen-go. The generated file is committed; regenerate it with
//
//	go generate ./frontends/onnx/onnxpb
//
// after `apt-get install protobuf-compiler protoc-gen-go`.
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=github.com/ciphercut/ciphercut/frontends/onnx/onnxpb onnx.proto
