// Package wire reads and writes PostgreSQL protocol frames as raw bytes. It is
// the proxy's framing layer: it knows message boundaries and the few
// encodings the proxy must build itself, nothing about sessions. It imports
// only pgproto3 and the standard library.
//
// A frame is the type byte, the 4-byte length and the body. Readers are
// *bufio.Reader values; a frame that fits in the reader's buffer is handed out
// as a slice of that buffer (valid only until the next read), larger frames are
// streamed so memory stays flat however large a DataRow or CopyData is.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderLen is the size of a regular message header: type byte and length.
const HeaderLen = 5

// MaxStartupPacket is the largest startup packet accepted, as in PostgreSQL.
const MaxStartupPacket = 10000

// ErrTooLarge is returned for a frame whose declared length exceeds the limit.
var ErrTooLarge = errors.New("message exceeds the maximum message size")

// Header is a decoded message header.
type Header struct {
	Type byte
	// BodyLen is the body length, excluding type and length fields.
	BodyLen int
}

// FrameLen is the length of the whole frame including the header.
func (h Header) FrameLen() int { return HeaderLen + h.BodyLen }

// PeekHeader returns the header of the next frame without consuming it.
// max bounds BodyLen (0 means no bound beyond the protocol's 1 GiB).
func PeekHeader(r *bufio.Reader, max int) (Header, error) {
	b, err := r.Peek(HeaderLen)
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	n := int(int32(binary.BigEndian.Uint32(b[1:])))
	if n < 4 {
		return Header{}, fmt.Errorf("invalid message length %d for message type %q", n, b[0])
	}
	h := Header{Type: b[0], BodyLen: n - 4}
	if (max > 0 && h.BodyLen > max) || h.BodyLen > 1<<30 {
		return h, fmt.Errorf("%w: %d bytes (type %q)", ErrTooLarge, h.BodyLen, b[0])
	}
	return h, nil
}

// Fits reports whether the whole frame fits in r's buffer, so that PeekFrame
// can return it without copying.
func Fits(r *bufio.Reader, h Header) bool { return h.FrameLen() <= r.Size() }

// PeekFrame returns the whole frame (header included) from r's buffer without
// consuming it. h must fit (see Fits). The slice is valid until the next read
// from r; call Discard(r, h) once done with it.
func PeekFrame(r *bufio.Reader, h Header) ([]byte, error) {
	b, err := r.Peek(h.FrameLen())
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// Discard consumes the frame whose header is h.
func Discard(r *bufio.Reader, h Header) error {
	_, err := r.Discard(h.FrameLen())
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ReadFrame consumes the frame whose header is h and returns it, header
// included. It returns a slice of r's buffer when the frame fits (valid until
// the next read from r), and otherwise reads into buf, growing it; the caller
// keeps buf for reuse.
func ReadFrame(r *bufio.Reader, h Header, buf *[]byte) ([]byte, error) {
	if Fits(r, h) {
		b, err := PeekFrame(r, h)
		if err != nil {
			return nil, err
		}
		_, err = r.Discard(len(b))
		return b, err
	}
	if cap(*buf) < h.FrameLen() {
		*buf = make([]byte, h.FrameLen())
	}
	b := (*buf)[:h.FrameLen()]
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// Forward copies the frame whose header is h from r to w without decoding it.
// Frames larger than r's buffer are streamed.
func Forward(w *bufio.Writer, r *bufio.Reader, h Header) error {
	if Fits(r, h) {
		b, err := PeekFrame(r, h)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, err = r.Discard(len(b))
		return err
	}
	if _, err := io.CopyN(w, r, int64(h.FrameLen())); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// Body returns the body part of a frame returned by PeekFrame or ReadFrame.
func Body(frame []byte) []byte { return frame[HeaderLen:] }

// CString returns the NUL-terminated string at the start of b and the rest.
func CString(b []byte) (string, []byte, error) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], nil
		}
	}
	return "", nil, errors.New("string is not NUL-terminated")
}

// QueryText returns the SQL of a Query ('Q') body, without copying.
func QueryText(body []byte) ([]byte, error) {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return nil, errors.New("malformed Query message")
	}
	return body[:len(body)-1], nil
}

// ParseText returns the statement name and SQL of a Parse ('P') body.
func ParseText(body []byte) (name string, sql []byte, err error) {
	name, rest, err := CString(body)
	if err != nil {
		return "", nil, errors.New("malformed Parse message")
	}
	for i, c := range rest {
		if c == 0 {
			return name, rest[:i], nil
		}
	}
	return "", nil, errors.New("malformed Parse message")
}

// BindStatement returns the prepared statement name a Bind ('B') body refers to.
func BindStatement(body []byte) (string, error) {
	_, rest, err := CString(body) // portal
	if err != nil {
		return "", errors.New("malformed Bind message")
	}
	name, _, err := CString(rest)
	if err != nil {
		return "", errors.New("malformed Bind message")
	}
	return name, nil
}

// ErrorFields returns the severity (non-localized when present), message and
// SQLSTATE of an ErrorResponse or NoticeResponse body, without allocating
// more than the three strings.
func ErrorFields(body []byte) (severity, message, code string) {
	for len(body) > 0 && body[0] != 0 {
		field := body[0]
		value, rest, err := CString(body[1:])
		if err != nil {
			return
		}
		switch field {
		case 'V':
			severity = value
		case 'S':
			if severity == "" {
				severity = value
			}
		case 'M':
			message = value
		case 'C':
			code = value
		}
		body = rest
	}
	return
}
