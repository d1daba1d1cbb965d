package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// segmentPrefix and segmentSuffix frame the name of a spool segment;
	// between them a zero-padded creation time and sequence number make
	// names sort in the order the segments were written.
	segmentPrefix = "audit-"
	segmentSuffix = ".jsonl"
	// lockName is the file in the spool directory that one process at a
	// time holds locked.
	lockName = "LOCK"
	// maxSegmentBytes is the size after which the spool starts a new segment.
	// A replayed segment is read whole and written in one transaction, so it
	// bounds the memory and the transaction size of a replay.
	maxSegmentBytes = 1 << 20
)

// spooled is one line of a segment.
type spooled struct {
	Event
	Instance string `json:"instance,omitempty"`
}

// spool is the on-disk queue of events that could not be written to the
// table: append-only JSON-lines segment files, replayed oldest first. It is
// owned by the writer goroutine and not safe for concurrent use. close
// releases the directory lock.
type spool struct {
	dir      string
	maxBytes int64
	segBytes int64 // rotate the current segment at this size

	sealed  []segment // oldest first; the current segment is not among them
	cur     *os.File  // the segment appended to; nil until the next append
	curPath string
	curSize int64
	total   int64 // bytes in all segments, the current one included
	seq     int

	unlock func() error
}

type segment struct {
	path string
	size int64
}

// openSpool locks dir (creating it) and takes over the segments a previous
// process left there.
func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.spool_dir: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("audit.spool_dir: %s is in use by another process (%w); give each pgtenant instance a spool directory of its own", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: min(maxSegmentBytes, max(maxBytes/8, 1)), unlock: unlock}
	entries, err := os.ReadDir(dir)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("audit.spool_dir: %w", err)
	}
	// ReadDir sorts by name, which is the order of writing.
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			unlock()
			return nil, fmt.Errorf("audit.spool_dir: %w", err)
		}
		s.sealed = append(s.sealed, segment{path: filepath.Join(dir, name), size: info.Size()})
		s.total += info.Size()
	}
	return s, nil
}

// empty reports whether nothing is spooled.
func (s *spool) empty() bool { return len(s.sealed) == 0 && s.curSize == 0 }

// append writes as many of events as fit under maxBytes to the current
// segment and syncs it. It returns how many it wrote; the rest are dropped
// by the caller. On a write error nothing of the batch is kept.
func (s *spool) append(events []spooled) (int, error) {
	var buf bytes.Buffer
	n := 0
	for _, ev := range events {
		line, err := json.Marshal(ev)
		if err != nil {
			return 0, err // normalized events always encode
		}
		if s.total+int64(buf.Len()+len(line)+1) > s.maxBytes {
			break
		}
		buf.Write(line)
		buf.WriteByte('\n')
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if s.cur != nil && s.curSize >= s.segBytes {
		if err := s.seal(); err != nil {
			return 0, err
		}
	}
	if s.cur == nil {
		if err := s.create(); err != nil {
			return 0, err
		}
	}
	if _, err := s.cur.Write(buf.Bytes()); err != nil {
		// Cut a partial write off so that the segment stays line-aligned.
		_ = s.cur.Truncate(s.curSize)
		return 0, err
	}
	if err := s.cur.Sync(); err != nil {
		return 0, err
	}
	s.curSize += int64(buf.Len())
	s.total += int64(buf.Len())
	return n, nil
}

// create opens a new current segment and makes its name durable.
func (s *spool) create() error {
	s.seq++
	path := filepath.Join(s.dir, fmt.Sprintf("%s%020d-%06d%s", segmentPrefix, time.Now().UnixNano(), s.seq, segmentSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	s.cur, s.curPath, s.curSize = f, path, 0
	return nil
}

// seal closes the current segment and queues it for replay.
func (s *spool) seal() error {
	if s.cur == nil {
		return nil
	}
	err := s.cur.Close()
	s.sealed = append(s.sealed, segment{path: s.curPath, size: s.curSize})
	s.cur, s.curPath, s.curSize = nil, "", 0
	return err
}

// oldest returns the segment to replay next, sealing the current one when
// no other is left. ok is false when nothing is spooled.
func (s *spool) oldest() (seg segment, ok bool, err error) {
	if len(s.sealed) == 0 {
		if s.curSize == 0 {
			return segment{}, false, nil
		}
		if err := s.seal(); err != nil {
			return segment{}, false, err
		}
	}
	return s.sealed[0], true, nil
}

// read decodes a segment. Lines that do not decode (the tail of a write a
// crash cut short) are counted in corrupt and skipped.
func (s *spool) read(seg segment) (events []spooled, corrupt int, err error) {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return nil, 0, err
	}
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var ev spooled
		if err := json.Unmarshal(line, &ev); err != nil || ev.Reason == "" {
			corrupt++
			continue
		}
		events = append(events, ev.normalized())
	}
	return events, corrupt, nil
}

// remove deletes a segment that has been replayed.
func (s *spool) remove(seg segment) error {
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.skip(seg)
	return nil
}

// skip stops replaying a segment this process cannot read, leaving the file
// for the next one.
func (s *spool) skip(seg segment) {
	s.sealed = slices.DeleteFunc(s.sealed, func(x segment) bool { return x.path == seg.path })
	s.total -= seg.size
}

// close closes the current segment, keeping it for the next process, and
// releases the directory lock.
func (s *spool) close() error {
	return errors.Join(s.seal(), s.unlock())
}

// normalized makes a decoded line safe to write whatever the file held.
func (sp spooled) normalized() spooled {
	sp.Event = sp.Event.normalized(time.Now())
	sp.Instance = cleanText(sp.Instance, maxFieldBytes)
	return sp
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
