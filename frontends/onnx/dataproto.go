package onnx

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
)

// The ONNX test data of sequence and optional values are SequenceProto and
// OptionalProto messages from onnx-data.proto, which onnxpb does not hold.
// Their descriptors are built here (field numbers and types as in
// onnx-data.proto) so that such files can be recognized with proto.Unmarshal
// into a dynamic message and reported as unsupported.

var (
	dataDescOnce sync.Once
	seqDesc      protoreflect.MessageDescriptor
)

// sequenceDescriptor returns the descriptor of onnx.SequenceProto, or nil if
// it cannot be built.
func sequenceDescriptor() protoreflect.MessageDescriptor {
	dataDescOnce.Do(func() {
		opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
		rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
		i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
		i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()
		byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
		msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
		field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label,
			typ *descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
			f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ}
			if typeName != "" {
				f.TypeName = proto.String(typeName)
			}
			return f
		}
		fdp := &descriptorpb.FileDescriptorProto{
			Name:       proto.String("ciphercut/onnx-data.proto"),
			Package:    proto.String("onnx"),
			Dependency: []string{onnxpb.File_onnx_proto.Path()},
			Syntax:     proto.String("proto2"),
			MessageType: []*descriptorpb.DescriptorProto{
				{
					Name: proto.String("SequenceProto"),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("name", 1, opt, str, ""),
						field("elem_type", 2, opt, i32, ""),
						field("tensor_values", 3, rep, msg, ".onnx.TensorProto"),
						field("sparse_tensor_values", 4, rep, msg, ".onnx.SparseTensorProto"),
						field("sequence_values", 5, rep, msg, ".onnx.SequenceProto"),
						field("map_values", 6, rep, msg, ".onnx.MapProto"),
						field("optional_values", 7, rep, msg, ".onnx.OptionalProto"),
					},
				},
				{
					Name: proto.String("MapProto"),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("name", 1, opt, str, ""),
						field("key_type", 2, opt, i32, ""),
						field("keys", 3, rep, i64, ""),
						field("string_keys", 4, rep, byt, ""),
						field("values", 5, opt, msg, ".onnx.SequenceProto"),
					},
				},
				{
					Name: proto.String("OptionalProto"),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("name", 1, opt, str, ""),
						field("elem_type", 2, opt, i32, ""),
						field("tensor_value", 3, opt, msg, ".onnx.TensorProto"),
						field("sparse_tensor_value", 4, opt, msg, ".onnx.SparseTensorProto"),
						field("sequence_value", 5, opt, msg, ".onnx.SequenceProto"),
						field("map_value", 6, opt, msg, ".onnx.MapProto"),
						field("optional_value", 7, opt, msg, ".onnx.OptionalProto"),
					},
				},
			},
		}
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err == nil {
			seqDesc = fd.Messages().ByName("SequenceProto")
		}
	})
	return seqDesc
}

// dataProtoKind reports whether data looks like a serialized SequenceProto or
// OptionalProto (the two share field numbers and wire types, so one parse
// recognizes both): it decodes without unknown fields, its elem_type is set
// to a valid value and its name, if any, is printable text. It returns a
// description for messages, or "" when data is neither.
func dataProtoKind(data []byte) string {
	md := sequenceDescriptor()
	if md == nil {
		return ""
	}
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(data, m); err != nil || len(m.GetUnknown()) > 0 {
		return ""
	}
	et := md.Fields().ByName("elem_type")
	if !m.Has(et) {
		return ""
	}
	if v := m.Get(et).Int(); v < 1 || v > 5 {
		return ""
	}
	name := m.Get(md.Fields().ByName("name")).String()
	if !utf8.ValidString(name) {
		return ""
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return ""
		}
	}
	return "sequence or optional value (SequenceProto/OptionalProto)"
}
