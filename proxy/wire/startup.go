package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Startup packet codes (the first four bytes after the length).
const (
	SSLRequestCode    = 80877103
	GSSENCRequestCode = 80877104
	CancelRequestCode = 80877102
)

// ReadStartupPacket reads one length-prefixed startup packet (StartupMessage,
// SSLRequest, GSSENCRequest or CancelRequest) and returns its code and body
// (the bytes after the length, code included). The body is a copy.
func ReadStartupPacket(r *bufio.Reader) (code uint32, body []byte, err error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(lenBuf[:]))) - 4
	if n < 4 || n > MaxStartupPacket {
		return 0, nil, fmt.Errorf("invalid startup packet length %d", n+4)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(body), body, nil
}
