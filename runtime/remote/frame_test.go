package remote

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes to the frame, header and reply
// decoders:
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
	var beats bytes.Buffer // a reply after two progress frames
	writeFrame(&beats, FrameProgress, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	writeFrame(&beats, FrameProgress, []byte{2, 0, 0, 0, 0, 0, 0, 0})
	writeHeader(&beats, &Header{Status: "ok", Outputs: []Tensor{{Name: "y", Count: 1}}})
	f.Add(beats.Bytes())
	f.Add([]byte{FrameProgress, 0xff, 0xff, 0xff, 0x7f})
	limits := Limits{FrameHeader: MaxHeaderBytes, FrameKeys: 64, FrameCiphertext: 1024, FrameEnd: 0, FrameProgress: progressBytes}
	f.Fuzz(func(t *testing.T, data []byte) {
		readReply(bufio.NewReader(bytes.NewReader(data))) // progress frames, then a header
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
