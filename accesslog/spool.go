package accesslog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// spool is the on-disk segment log every batch passes through before it
// is stored: a directory of files "<first seq>.seg", each a run of frames
// [u32 length][u32 CRC-32C][payload]; the payload is uvarint seq, uvarint
// count, then count records in Record.AppendBinary form. A frame is
// fsynced before the batch is handed to the store writer, so a batch that
// reached the spool survives kill -9 and is replayed until stored.
type spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	mu       sync.Mutex
	segs     []segment // oldest first; the last one is active
	active   *os.File
	next     uint64 // seq of the next frame
	total    int64  // bytes on disk
	released uint64 // every seq below is stored; segments below may go
}

type segment struct {
	first, last uint64 // last is first-1 while empty
	path        string
	size        int64
}

const frameHeader = 8

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var errSpoolFull = errors.New("spool is full")

// openSpool opens or creates the spool in dir, truncating a torn frame at
// the end of the newest segment (the only place kill -9 can leave one).
func openSpool(dir string, maxBytes, segBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: segBytes, next: 1}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	var firsts []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		firsts = append(firsts, n)
	}
	slices.Sort(firsts)
	for i, first := range firsts {
		seg := segment{first: first, path: s.segPath(first)}
		last, good, err := scanSegment(seg.path, first)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(seg.path)
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if good < st.Size() {
			if i != len(firsts)-1 {
				return nil, fmt.Errorf("spool: segment %s is corrupt at byte %d and is not the newest; move it away to start", seg.path, good)
			}
			if err := os.Truncate(seg.path, good); err != nil {
				return nil, fmt.Errorf("spool: truncating torn frame in %s: %w", seg.path, err)
			}
		}
		seg.last, seg.size = last, good
		s.total += good
		s.segs = append(s.segs, seg)
		if last >= s.next {
			s.next = last + 1
		}
	}
	if len(s.segs) > 0 {
		s.released = s.segs[0].first
	} else {
		s.released = s.next
	}
	return s, nil
}

func (s *spool) segPath(first uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", first))
}

// scanSegment checks every frame and returns the last seq and the length
// of the valid prefix.
func scanSegment(path string, first uint64) (last uint64, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	last = first - 1
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		seq, _, n, ferr := readFrame(r)
		if ferr != nil {
			return last, good, nil
		}
		last = seq
		good += n
	}
}

func readFrame(r *bufio.Reader) (seq uint64, payload []byte, n int64, err error) {
	var h [frameHeader]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, 0, err
	}
	l := binary.LittleEndian.Uint32(h[:4])
	if l > 1<<30 {
		return 0, nil, 0, fmt.Errorf("frame length %d", l)
	}
	payload = make([]byte, l)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, 0, err
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, nil, 0, errors.New("frame checksum mismatch")
	}
	seq, k := binary.Uvarint(payload)
	if k <= 0 {
		return 0, nil, 0, errors.New("frame without seq")
	}
	return seq, payload, int64(frameHeader) + int64(l), nil
}

// encodeBatch appends a frame payload for recs with the given seq to buf.
func encodeBatch(buf []byte, seq uint64, recs []Record) []byte {
	buf = binary.AppendUvarint(buf, seq)
	buf = binary.AppendUvarint(buf, uint64(len(recs)))
	for i := range recs {
		buf = recs[i].AppendBinary(buf)
	}
	return buf
}

// decodeBatch reverses encodeBatch. The records' strings share one copy
// of the payload.
func decodeBatch(payload []byte) (uint64, []Record, error) {
	back := string(payload)
	payload = unsafe.Slice(unsafe.StringData(back), len(back)) // read only
	seq, k := binary.Uvarint(payload)
	if k <= 0 {
		return 0, nil, errors.New("spool frame: no seq")
	}
	payload = payload[k:]
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > uint64(len(payload)) {
		return 0, nil, errors.New("spool frame: bad count")
	}
	payload = payload[k:]
	recs := make([]Record, n)
	var err error
	for i := range recs {
		if payload, err = recs[i].decodeBinary(payload, back); err != nil {
			return 0, nil, fmt.Errorf("spool frame %d record %d: %w", seq, i, err)
		}
	}
	return seq, recs, nil
}

// nextSeq is the seq the next appended frame gets.
func (s *spool) nextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// bytes on disk.
func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// append writes recs as the next frame, fsyncs it and returns its seq.
func (s *spool) append(buf []byte, recs []Record) (uint64, []byte, error) {
	seq, buf, err := s.write(buf, recs)
	if err == nil {
		err = s.sync()
	}
	return seq, buf, err
}

// write writes recs as the next frame without fsyncing it: the frame is
// crash-safe only after the next sync (group commit: one fsync for every
// frame of a flush).
func (s *spool) write(buf []byte, recs []Record) (uint64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.next
	// The frame is built in buf: header space, then the payload.
	var h [frameHeader]byte
	frame := encodeBatch(append(buf[:0], h[:]...), seq, recs)
	buf = frame
	payload := frame[frameHeader:]
	binary.LittleEndian.PutUint32(frame[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(payload, crcTable))
	if s.total+int64(len(frame)) > s.maxBytes {
		return 0, buf, errSpoolFull
	}
	if s.active == nil || s.segs[len(s.segs)-1].size+int64(len(frame)) > s.segBytes && s.segs[len(s.segs)-1].size > 0 {
		if err := s.rotate(seq); err != nil {
			return 0, buf, err
		}
	}
	if _, err := s.active.Write(frame); err != nil {
		return 0, buf, fmt.Errorf("spool: writing frame %d: %w", seq, err)
	}
	cur := &s.segs[len(s.segs)-1]
	cur.last = seq
	cur.size += int64(len(frame))
	s.total += int64(len(frame))
	s.next++
	return seq, buf, nil
}

// sync fsyncs the active segment (rotate fsyncs a segment it closes).
func (s *spool) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	if err := s.active.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	return nil
}

// rotate starts a new active segment whose first frame is seq. An existing
// segment file (the newest one after a restart) is appended to.
func (s *spool) rotate(seq uint64) error {
	if s.active != nil {
		// Frames written since the last sync must be on disk before the
		// segment is closed.
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
		if err := s.active.Close(); err != nil {
			return fmt.Errorf("spool: closing segment: %w", err)
		}
		s.active = nil
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].last == seq-1 && s.segs[n-1].size < s.segBytes {
		f, err := os.OpenFile(s.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.active = f
		return nil
	}
	seg := segment{first: seq, last: seq - 1, path: s.segPath(seq)}
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: creating segment: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	s.active = f
	s.segs = append(s.segs, seg)
	return nil
}

// release marks every seq below upTo as stored and deletes segments that
// hold nothing else (never the active one).
func (s *spool) release(upTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if upTo > s.released {
		s.released = upTo
	}
	// The newest segment always stays: it carries the seq numbering.
	for len(s.segs) > 1 && s.segs[0].last < s.released {
		seg := s.segs[0]
		if err := os.Remove(seg.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("spool: removing stored segment: %w", err)
		}
		s.total -= seg.size
		s.segs = s.segs[1:]
	}
	return nil
}

// read calls fn for every frame with from <= seq < to, in order.
func (s *spool) read(from, to uint64, fn func(seq uint64, recs []Record) error) error {
	s.mu.Lock()
	segs := slices.Clone(s.segs)
	s.mu.Unlock()
	for _, seg := range segs {
		if seg.last < from || seg.first >= to {
			continue
		}
		if err := readSegment(seg, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

func readSegment(seg segment, from, to uint64, fn func(uint64, []Record) error) error {
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.LimitReader(f, seg.size), 1<<20)
	for {
		seq, payload, _, err := readFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("spool: reading %s: %w", seg.path, err)
		}
		if seq < from {
			continue
		}
		if seq >= to {
			return nil
		}
		_, recs, err := decodeBatch(payload)
		if err != nil {
			return err
		}
		if err := fn(seq, recs); err != nil {
			return err
		}
	}
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	err := s.active.Close()
	s.active = nil
	return err
}
