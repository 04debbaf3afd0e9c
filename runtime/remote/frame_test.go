package remote

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes to the frame and header decoders:
// they must return frames within the limits or errors, never panic or
// allocate past a limit.
func FuzzReadFrame(f *testing.F) {
	var good bytes.Buffer
	writeHeader(&good, &Header{Op: "eval", Plan: "p", Keys: "k", Inputs: []Tensor{{Name: "x", Count: 1}}})
	writeFrame(&good, FrameCiphertext, []byte("ccCT\x01abc"))
	writeFrame(&good, FrameKeys, []byte("chunk"))
	writeFrame(&good, FrameEnd, nil)
	f.Add(good.Bytes())
	f.Add([]byte{FrameHeader, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{FrameEnd, 1, 0, 0, 0, 0})
	f.Add([]byte{FrameHeader, 2, 0, 0, 0, '{', '}'})
	f.Add([]byte{'X'})
	limits := Limits{FrameHeader: MaxHeaderBytes, FrameKeys: 64, FrameCiphertext: 1024, FrameEnd: 0}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			typ, payload, err := readFrame(r, limits)
			if err != nil {
				return
			}
			if uint32(len(payload)) > limits[typ] {
				t.Fatalf("%s frame of %d bytes passed the limit %d", frameName(typ), len(payload), limits[typ])
			}
			if typ == FrameHeader {
				decodeHeader(payload)
			}
		}
	})
}
