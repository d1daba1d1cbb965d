package wire

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzFrames feeds arbitrary bytes to the frame reader the proxy uses on
// client sockets: it must never panic, never return a frame longer than the
// input, and never accept a length above the limit.
func FuzzFrames(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00"))
	f.Add([]byte("P\x00\x00\x00\x10s1\x00SELECT\x00\x00\x00B\x00\x00\x00\x0e\x00s1\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("X\x00\x00\x00\x04"))
	f.Add([]byte("Q\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 12
		r := bufio.NewReaderSize(bytes.NewReader(data), 64)
		var buf []byte
		for {
			h, err := PeekHeader(r, limit)
			if err != nil {
				return
			}
			if h.BodyLen > limit {
				t.Fatalf("accepted body of %d bytes over the %d limit", h.BodyLen, limit)
			}
			frame, err := ReadFrame(r, h, &buf)
			if err != nil {
				return
			}
			if len(frame) != h.FrameLen() || len(frame) > len(data) {
				t.Fatalf("frame of %d bytes from %d bytes of input", len(frame), len(data))
			}
			body := Body(frame)
			switch h.Type {
			case 'Q':
				_, _ = QueryText(body)
			case 'P':
				_, _, _ = ParseText(body)
			case 'B':
				_, _ = BindStatement(body)
			case 'E':
				_, _, _ = ErrorFields(body)
			}
		}
	})
}

// FuzzStartupPacket feeds arbitrary bytes to the startup packet reader.
func FuzzStartupPacket(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Add([]byte("\x00\x00\x00\x17\x00\x03\x00\x00user\x00app\x00\x00"))
	f.Add([]byte("\x00\x00\x00\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		code, body, err := ReadStartupPacket(r)
		if err != nil {
			return
		}
		if len(body) < 4 || len(body) > MaxStartupPacket || len(body)+4 > len(data) {
			t.Fatalf("startup body of %d bytes (code %d) from %d bytes", len(body), code, len(data))
		}
	})
}
