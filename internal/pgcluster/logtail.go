package pgcluster

import (
	"strings"
	"sync"
)

// logTailSize bounds how much recent server output a Cluster keeps in memory
// for error messages and LogTail.
const logTailSize = 16 << 10

// tailBuffer is an io.Writer that keeps the last logTailSize bytes written to
// it. It is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - logTailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output, starting at a line boundary when it was cut.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	s := string(t.buf)
	t.mu.Unlock()
	if len(s) >= logTailSize {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

// lastLines returns at most n trailing lines of the kept output.
func (t *tailBuffer) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
