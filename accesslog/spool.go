package accesslog

import (
	"bufio"
	"cmp"
	"crypto/rand"
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
	"sync/atomic"
	"time"
	"unsafe"
)

// spool is the on-disk segment log every batch passes through before it
// is stored: a directory of segment files, each a run of frames
// [u32 length][u32 CRC-32C][payload]; the payload is uvarint seq, uvarint
// count, then count records in Record.AppendBinary form. A frame is
// fsynced before the batch is handed to the store writer, so a batch that
// reached the spool survives kill -9 and is replayed until stored.
//
// Segment files "w<n>.seg" start with a header (magic, a random salt,
// CRC). A stored segment is recycled instead of deleted, like a database
// recycles its WAL segments: the spool's preparer goroutine gives it a new
// salt in its header, pads it with zeros to the segment size if it is
// shorter, fsyncs it and keeps it as "w<n>.free" (up to spareSegments);
// the next segment is such a file when there is one, and frames overwrite
// its old content in place, so the file never grows and a flush needs
// only fdatasync, which writes the frames' pages but no metadata: no
// journal commit, which on ext4 (data=ordered) would also wait for other
// files' dirty data (the store's). Until stored segments come back (a new
// spool, or one that needs more segments than it kept) the preparer
// writes fresh ones ahead of need: a new file with a header, zeros to the
// segment size, fsynced with its directory, also kept as "w<n>.free" (it
// keeps preparedSegments free files ready, started at open). Only when
// none is ready (the first frames of a new spool, a preparer behind, or
// one that failed: disk full) does a new segment grow as frames are
// written, its flushes committing the journal as before.
// The CRC of a frame covers the segment's salt and its payload, and seqs
// follow each other within a segment, so the valid frames of a segment end
// at the first frame of zero length (zeros), with a bad CRC (a torn frame,
// or a frame of the file's previous life) or an unexpected seq. File names
// do not matter for correctness: at start every file is scanned and ordered
// by its frames' seqs.
//
// Segments written before this format ("<first seq>.seg", frames
// from byte 0, CRC of the payload only) are read, replayed and deleted,
// never written to again.
type spool struct {
	dir      string
	maxBytes int64 // bound of the frames' bytes (preallocated space not counted)
	segBytes int64

	mu       sync.Mutex
	segs     []segment // oldest first; the last one is active while active != nil
	active   *os.File
	next     uint64 // seq of the next frame
	total    int64  // bytes of frames on disk
	released uint64 // every seq below is stored; segments below may go
	fileNo   uint64 // the highest n of a "w<n>" file name
	free     []freeSeg
	// recycle holds stored segments for the preparer to recycle (or
	// delete).
	recycle []segment
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  bool
	prepErr error // the preparer's last error, logged by the ingester
	// prepared is how many free segments the preparer keeps ready,
	// writing fresh ones when no stored segment comes back (0: none).
	prepared int
	// retryAt: after a fresh segment failed (disk full), the preparer
	// writes none before then; retry is the pause.
	retryAt time.Time
	retry   time.Duration
	// writeAt writes the zeros of a fresh or padded segment (tests make
	// it fail).
	writeAt func(f *os.File, b []byte, off int64) (int, error)
	// paceWriteback waits until a chunk of zeros is on the disk
	// (waitWriteback; tests watch it).
	paceWriteback func(f *os.File, off, n int64) error
	// grew: a frame written since the last sync made the active file
	// grow (its fsync commits metadata).
	grew bool
	// syncing is set while sync runs its fdatasync outside mu; a segment
	// rotate closes meanwhile waits in retired for sync to close it.
	syncing bool
	retired []*os.File
	// fsync makes a segment's written frames durable (fdatasync; tests
	// slow it down).
	fsync func(*os.File) error
	// framesRead counts the frames read back (replay and the store's
	// catch-up), for tests.
	framesRead atomic.Uint64
}

type segment struct {
	first, last uint64 // last is first-1 while empty
	path        string
	size        int64  // bytes of valid frames (after the header)
	hdr         int64  // header bytes (0: a segment written before preallocation)
	salt        uint64 // seeds the frames' CRC (preallocated segments)
	filled      int64  // bytes of the file already written (zeros or older frames): overwritten in place
	recycled    bool   // the file held stored frames before (behind the valid ones: a previous life's)
}

// freeSeg is a preallocated segment file ready to be taken.
type freeSeg struct {
	path     string
	salt     uint64
	size     int64
	recycled bool
}

const (
	frameHeader = 8
	segHeader   = 24 // magic, salt, CRC-32C of both, 4 zero bytes
	// preparedSegments is how many free segment files the preparer keeps
	// ready, writing fresh ones (zeros) when no stored segment comes
	// back.
	preparedSegments = 2
	// spareSegments is how many free segment files the spool keeps at
	// most: one more than preparedSegments, so that a stored segment is
	// recycled (a header written) rather than deleted while the fresh
	// ones fill the pool, and the steady state writes no zeros.
	spareSegments = preparedSegments + 1
	// prepareRetry is the pause after a fresh segment failed.
	prepareRetry = 10 * time.Second
)

var segMagic = [8]byte{'G', 'H', 'S', 'P', 'O', 'O', 'L', '2'}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var errSpoolFull = errors.New("spool is full")

// openSpool opens or creates the spool in dir. The frames of every
// segment file are checked; a torn frame at the end of the newest
// old-format segment is truncated (the only place kill -9 can leave one
// in it); in a "w<n>" segment the valid frames end where the scan stops
// and nothing is truncated (the file keeps its size). Writing always
// continues in another segment.
func openSpool(dir string, maxBytes, segBytes int64) (*spool, error) {
	return openSpoolPrepared(dir, maxBytes, segBytes, preparedSegments)
}

// openSpoolPrepared is openSpool with prepared free segments kept ready
// (0: only stored segments are recycled).
func openSpoolPrepared(dir string, maxBytes, segBytes int64, prepared int) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: max(segBytes, 2*segHeader), next: 1,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), fsync: fdatasync,
		prepared: prepared, retry: prepareRetry, writeAt: (*os.File).WriteAt, paceWriteback: waitWriteback}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	var legacy []uint64
	for _, e := range ents {
		name := e.Name()
		base, ok := strings.CutSuffix(name, ".seg")
		if !ok {
			base, ok = strings.CutSuffix(name, ".free")
		}
		if !ok {
			continue
		}
		if n, ok := strings.CutPrefix(base, "w"); ok {
			no, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				continue
			}
			s.fileNo = max(s.fileNo, no)
			if err := s.openSegment(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			continue
		}
		if n, err := strconv.ParseUint(base, 10, 64); err == nil && strings.HasSuffix(name, ".seg") {
			legacy = append(legacy, n)
		}
	}
	slices.Sort(legacy)
	for i, first := range legacy {
		seg := segment{first: first, path: filepath.Join(dir, fmt.Sprintf("%020d.seg", first))}
		last, good, err := scanSegment(seg, first)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(seg.path)
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if good < st.Size() {
			if i != len(legacy)-1 {
				return nil, fmt.Errorf("spool: segment %s is corrupt at byte %d and is not the newest; move it away to start", seg.path, good)
			}
			if err := os.Truncate(seg.path, good); err != nil {
				return nil, fmt.Errorf("spool: truncating torn frame in %s: %w", seg.path, err)
			}
		}
		seg.last, seg.size = last, good
		s.segs = append(s.segs, seg)
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	for _, seg := range s.segs {
		s.total += seg.size
		if seg.last >= s.next {
			s.next = seg.last + 1
		}
	}
	if len(s.segs) > 0 {
		s.released = s.segs[0].first
	} else {
		s.released = s.next
	}
	go s.prepare()
	if len(s.recycle) > 0 || s.prepared > 0 {
		s.wake()
	}
	return s, nil
}

// openSegment reads the preallocated segment file at path: one with
// frames joins segs, an empty one is recycled (given a new salt) before
// it is used again.
func (s *spool) openSegment(path string) error {
	seg := segment{path: path}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	seg.filled = st.Size()
	salt, ok, err := readSegHeader(path)
	if err != nil {
		return err
	}
	if !ok {
		// A header not written in full: nothing in the file was ever
		// fsynced as a frame.
		return s.reuseOrRemove(seg)
	}
	seg.hdr, seg.salt = segHeader, salt
	first, last, good, err := scanFrames(seg, 0)
	if err != nil {
		return err
	}
	if good == 0 {
		return s.reuseOrRemove(seg)
	}
	seg.first, seg.last, seg.size = first, last, good
	s.segs = append(s.segs, seg)
	return nil
}

// reuseOrRemove keeps a file without frames found at start for the
// preparer to recycle, or deletes it.
func (s *spool) reuseOrRemove(seg segment) error {
	if s.recyclable(seg) && len(s.recycle) < spareSegments {
		s.recycle = append(s.recycle, seg)
		return nil
	}
	if err := os.Remove(seg.path); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// recyclable says whether seg's file is worth recycling: at least half the
// segment size written (the rest is padded with zeros) and not larger.
func (s *spool) recyclable(seg segment) bool {
	return seg.filled >= s.segBytes/2 && seg.filled <= s.segBytes
}

func readSegHeader(path string) (salt uint64, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	var h [segHeader]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, false, nil
	}
	if [8]byte(h[:8]) != segMagic || crc32.Checksum(h[:16], crcTable) != binary.LittleEndian.Uint32(h[16:20]) {
		return 0, false, nil
	}
	return binary.LittleEndian.Uint64(h[8:16]), true, nil
}

func segHeaderBytes(salt uint64) []byte {
	h := make([]byte, segHeader)
	copy(h, segMagic[:])
	binary.LittleEndian.PutUint64(h[8:], salt)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], crcTable))
	return h
}

// scanSegment checks every frame of an old-format segment and returns the
// last seq and the length of the valid prefix.
func scanSegment(seg segment, first uint64) (last uint64, good int64, err error) {
	_, last, good, err = scanFrames(seg, first)
	return last, good, err
}

// scanFrames reads seg's frames from its header on and returns the seqs
// of its first and last valid frame (want-1 for both when there is none;
// want 0: any first seq) and the bytes of its valid frames.
func scanFrames(seg segment, want uint64) (first, last uint64, good int64, err error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(seg.hdr, io.SeekStart); err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	first, last = want, want-1
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		seq, _, n, ferr := readFrame(r, seg.salt, seg.hdr > 0)
		if ferr != nil || (good > 0 || want != 0) && seq != last+1 {
			return first, last, good, nil
		}
		if good == 0 {
			first = seq
		}
		last = seq
		good += n
	}
}

// readFrame reads one frame. salted: its CRC covers salt and payload (a
// preallocated segment). A frame of length zero is the end of the
// segment's frames (its zero tail).
func readFrame(r *bufio.Reader, salt uint64, salted bool) (seq uint64, payload []byte, n int64, err error) {
	var h [frameHeader]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, 0, err
	}
	l := binary.LittleEndian.Uint32(h[:4])
	if l == 0 {
		return 0, nil, 0, errEndOfFrames
	}
	if l > 1<<30 {
		return 0, nil, 0, fmt.Errorf("frame length %d", l)
	}
	payload = make([]byte, l)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, 0, err
	}
	if frameCRC(salt, salted, payload) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, nil, 0, errors.New("frame checksum mismatch")
	}
	seq, k := binary.Uvarint(payload)
	if k <= 0 {
		return 0, nil, 0, errors.New("frame without seq")
	}
	return seq, payload, int64(frameHeader) + int64(l), nil
}

var errEndOfFrames = errors.New("end of frames")

// frameCRC is the CRC-32C of a frame: of salt and payload in a
// preallocated segment, so that a frame of the file's previous life (or
// anything that looks like a frame inside one) never passes for a frame
// of this one.
func frameCRC(salt uint64, salted bool, payload []byte) uint32 {
	if !salted {
		return crc32.Checksum(payload, crcTable)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], salt)
	return crc32.Update(crc32.Checksum(b[:], crcTable), crcTable, payload)
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
		_, err = s.sync()
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
	if s.total+int64(len(frame)) > s.maxBytes {
		return 0, buf, errSpoolFull
	}
	if s.active == nil {
		if err := s.rotate(seq); err != nil {
			return 0, buf, err
		}
	} else if cur := &s.segs[len(s.segs)-1]; cur.size > 0 && (cur.hdr+cur.size+int64(len(frame)) > s.segBytes || cur.filled < s.segBytes && len(s.free) > 0) {
		// Full, or a segment that grows while a recycled one is ready.
		if err := s.rotate(seq); err != nil {
			return 0, buf, err
		}
	}
	cur := &s.segs[len(s.segs)-1]
	binary.LittleEndian.PutUint32(frame[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:], frameCRC(cur.salt, true, payload))
	if cur.hdr+cur.size+int64(len(frame)) > cur.filled {
		s.grew = true
	}
	if _, err := s.active.WriteAt(frame, cur.hdr+cur.size); err != nil {
		return 0, buf, fmt.Errorf("spool: writing frame %d: %w", seq, err)
	}
	cur.last = seq
	cur.size += int64(len(frame))
	cur.filled = max(cur.filled, cur.hdr+cur.size)
	s.total += int64(len(frame))
	s.next++
	return seq, buf, nil
}

// sync makes every frame written before the call durable: it fsyncs the
// active segment's data (rotate fsyncs a segment before it closes it, so
// frames in older segments are durable already). In a recycled segment
// that is fdatasync of pages within the file's size: no metadata to
// commit. The fdatasync runs outside mu, so frames of the next flush are
// written meanwhile (they are durable only after the next sync); one sync
// runs at a time. grew says whether a frame it covers made its file grow
// (a growing segment: the fsync commits the file's new size too).
func (s *spool) sync() (grew bool, err error) {
	s.mu.Lock()
	f := s.active
	s.syncing = f != nil
	grew, s.grew = s.grew, false
	s.mu.Unlock()
	if f == nil {
		return grew, nil
	}
	err = s.fsync(f)
	s.mu.Lock()
	s.syncing = false
	retired := s.retired
	s.retired = nil
	s.mu.Unlock()
	for _, r := range retired {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err != nil {
		return grew, fmt.Errorf("spool: fsync: %w", err)
	}
	return grew, nil
}

// rotate starts a new active segment whose first frame is seq: a recycled
// one when there is one, else a new file that grows as frames are
// written (s.mu held).
func (s *spool) rotate(seq uint64) error {
	if s.active != nil {
		// Frames written since the last sync must be on disk before the
		// segment is closed, and before any frame goes into the next one:
		// a frame never reaches the disk ahead of an earlier one in
		// another file (a later segment's frames after a gap would stop
		// the next start, see missing).
		if err := s.fsync(s.active); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
		if s.syncing {
			// sync is fsyncing it outside mu: it closes it when done.
			s.retired = append(s.retired, s.active)
		} else if err := s.active.Close(); err != nil {
			return fmt.Errorf("spool: closing segment: %w", err)
		}
		s.active = nil
	}
	seg := segment{first: seq, last: seq - 1, hdr: segHeader}
	if len(s.free) > 0 {
		fs := s.free[0]
		f, err := os.OpenFile(fs.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		// The name only tells a reader which files are free: at start the
		// frames decide, so the rename needs no fsync of the directory.
		path := strings.TrimSuffix(fs.path, ".free") + ".seg"
		if err := os.Rename(fs.path, path); err != nil {
			f.Close()
			return fmt.Errorf("spool: %w", err)
		}
		s.free = s.free[1:]
		seg.path, seg.salt, seg.filled, seg.recycled = path, fs.salt, fs.size, fs.recycled
		s.active = f
		if s.prepared > 0 {
			s.wake() // a fresh one, unless a stored one comes back
		}
	} else {
		salt, err := newSalt()
		if err != nil {
			return err
		}
		s.fileNo++
		seg.path, seg.salt = filepath.Join(s.dir, fmt.Sprintf("w%020d.seg", s.fileNo)), salt
		f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("spool: creating segment: %w", err)
		}
		if _, err := f.Write(segHeaderBytes(salt)); err != nil {
			f.Close()
			return fmt.Errorf("spool: creating segment: %w", err)
		}
		seg.filled = segHeader
		syncDir(s.dir)
		s.active = f
		s.grew = true
		if s.prepared > 0 {
			s.wake() // none was ready: retry a failed one when due
		}
	}
	s.segs = append(s.segs, seg)
	return nil
}

func newSalt() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// wake asks the preparer to look for work.
func (s *spool) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// prepare is the spool's preparer goroutine: it recycles the stored
// segments release hands it (reuse), off the spool goroutine's path.
func (s *spool) prepare() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		for s.prepareOne() {
		}
	}
}

// prepareOne does one piece of the preparer's work and says whether there
// may be more.
func (s *spool) prepareOne() bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if len(s.recycle) > 0 {
		seg := s.recycle[0]
		s.recycle = s.recycle[1:]
		writeAt, pace := s.writeAt, s.paceWriteback
		s.mu.Unlock()
		fs, err := s.reuse(seg.path, writeAt, pace)
		if err != nil {
			if rerr := os.Remove(seg.path); rerr != nil && !os.IsNotExist(rerr) {
				err = errors.Join(err, fmt.Errorf("spool: removing stored segment: %w", rerr))
			}
		}
		s.mu.Lock()
		if err != nil {
			s.prepErr = err
		} else {
			s.free = append(s.free, fs)
		}
		s.mu.Unlock()
		return true
	}
	if !s.needFresh() {
		s.mu.Unlock()
		return false
	}
	s.fileNo++
	path := filepath.Join(s.dir, fmt.Sprintf("w%020d.free", s.fileNo))
	writeAt, pace := s.writeAt, s.paceWriteback
	s.mu.Unlock()
	fs, err := s.fresh(path, writeAt, pace)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.prepErr = err
		s.retryAt = time.Now().Add(s.retry)
		return false
	}
	if s.closed {
		// Found and reused at the next start.
		return false
	}
	s.free = append(s.free, fs)
	return true
}

// needFresh says whether the preparer should write a fresh segment (s.mu
// held): fewer than prepared free segments ready or coming from the
// stored ones, not after a failure until retryAt, and only while the
// spool's files stay within maxBytes + (1+spareSegments) segments: the
// frames' bound, the active segment and the free ones.
func (s *spool) needFresh() bool {
	if s.closed || len(s.free)+len(s.recycle) >= s.prepared || time.Now().Before(s.retryAt) {
		return false
	}
	files := int64(len(s.free)+len(s.recycle)+1) * s.segBytes
	for _, seg := range s.segs {
		files += max(seg.filled, seg.hdr+seg.size)
	}
	return files <= s.maxBytes+int64(1+spareSegments)*s.segBytes
}

// fresh writes a new free segment at path: a header with a new salt, then
// zeros to the segment size (writeZeros: paced), fsynced with the
// directory. Zeros end a segment's frames, so an unused fresh segment
// replays as nothing, also when a crash cut its preparation short (found
// at start without frames, it is recycled or deleted). It stops early
// when the spool closes. On an error (disk full) the file is removed:
// flushes go to growing segments meanwhile.
func (s *spool) fresh(path string, writeAt func(*os.File, []byte, int64) (int, error), pace func(*os.File, int64, int64) error) (freeSeg, error) {
	salt, err := newSalt()
	if err != nil {
		return freeSeg{}, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return freeSeg{}, fmt.Errorf("spool: preparing segment: %w", err)
	}
	if _, err = writeAt(f, segHeaderBytes(salt), 0); err == nil {
		_, err = s.writeZeros(f, segHeader, writeAt, pace)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if rerr := os.Remove(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return freeSeg{}, fmt.Errorf("spool: preparing segment %s: %w", path, err)
	}
	syncDir(s.dir)
	return freeSeg{path: path, salt: salt, size: s.segBytes}, nil
}

// writeZeros writes zeros to f from off to the segment size, a MiB at a
// time, with at most two chunks on their way to the disk (pace waits for
// the one before the last): a flush's fdatasync queued behind them waits
// for about 2 MiB, not for a segment's worth. It stops when the spool
// closes. wrote: f grew.
func (s *spool) writeZeros(f *os.File, off int64, writeAt func(*os.File, []byte, int64) (int, error), pace func(*os.File, int64, int64) error) (wrote bool, err error) {
	zeros := make([]byte, min(1<<20, s.segBytes))
	var prev, prevN int64
	for off < s.segBytes {
		select {
		case <-s.stop:
			return wrote, errors.New("spool closed")
		default:
		}
		n := min(int64(len(zeros)), s.segBytes-off)
		if _, err := writeAt(f, zeros[:n], off); err != nil {
			return wrote, err
		}
		wrote = true
		startWriteback(f, off, n)
		if prevN > 0 {
			if err := pace(f, prev, prevN); err != nil {
				return wrote, err
			}
		}
		prev, prevN = off, n
		off += n
	}
	return wrote, nil
}

// reuse gives the free segment file at path (a stored segment or an empty
// one found at start) a new salt, so that its old frames no longer pass
// their CRC, pads it with zeros to the segment size (writeZeros: paced),
// fsyncs it and makes it free.
func (s *spool) reuse(path string, writeAt func(*os.File, []byte, int64) (int, error), pace func(*os.File, int64, int64) error) (freeSeg, error) {
	salt, err := newSalt()
	if err != nil {
		return freeSeg{}, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return freeSeg{}, fmt.Errorf("spool: recycling segment: %w", err)
	}
	_, err = f.WriteAt(segHeaderBytes(salt), 0)
	grew := false
	if st, serr := f.Stat(); err == nil {
		err = serr
		if err == nil {
			grew, err = s.writeZeros(f, st.Size(), writeAt, pace)
		}
	}
	if err == nil && grew {
		err = f.Sync() // data and the new size, once
	} else if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return freeSeg{}, fmt.Errorf("spool: recycling segment: %w", err)
	}
	return freeSeg{path: path, salt: salt, size: s.segBytes, recycled: true}, nil
}

// preparerErr returns (and forgets) the preparer's last error.
func (s *spool) preparerErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.prepErr
	s.prepErr = nil
	return err
}

// release marks every seq below upTo as stored and recycles segments
// that hold nothing else (never the newest): up to spareSegments of them
// are renamed "w<n>.free" and left to the preparer (reuse); the rest are
// deleted.
func (s *spool) release(upTo uint64) error {
	type job struct {
		seg segment
		to  string // "": delete
	}
	var jobs []job
	s.mu.Lock()
	if upTo > s.released {
		s.released = upTo
	}
	// The newest segment always stays: it carries the seq numbering.
	for len(s.segs) > 1 && s.segs[0].last < s.released {
		seg := s.segs[0]
		s.total -= seg.size
		s.segs = s.segs[1:]
		j := job{seg: seg}
		if seg.hdr > 0 && s.recyclable(seg) && len(s.free)+len(s.recycle)+len(jobs) < spareSegments {
			s.fileNo++
			j.to = filepath.Join(s.dir, fmt.Sprintf("w%020d.free", s.fileNo))
		}
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	// Outside the lock: a flush does not wait for these renames and
	// deletions.
	var errs []error
	var recycled []segment
	for _, j := range jobs {
		if j.to != "" {
			if err := os.Rename(j.seg.path, j.to); err == nil {
				j.seg.path = j.to
				recycled = append(recycled, j.seg)
				continue
			}
		}
		if err := os.Remove(j.seg.path); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("spool: removing stored segment: %w", err))
		}
	}
	if len(recycled) > 0 {
		s.mu.Lock()
		s.recycle = append(s.recycle, recycled...)
		s.mu.Unlock()
		s.wake()
	}
	return errors.Join(errs...)
}

// read calls fn for every frame with from <= seq < to, in order.
func (s *spool) read(from, to uint64, fn func(seq uint64, recs []Record) error) error {
	return s.readPayloads(from, to, func(seq uint64, payload []byte) error {
		_, recs, err := decodeBatch(payload)
		if err != nil {
			return err
		}
		return fn(seq, recs)
	})
}

// readEncoded calls fn for every frame with from <= seq < to, in order,
// with its records still encoded: n records in Record.AppendBinary form,
// recs, the tail of payload (the frame's payload, a fresh array fn may
// keep).
func (s *spool) readEncoded(from, to uint64, fn func(seq uint64, n int, recs, payload []byte) error) error {
	return s.readPayloads(from, to, func(seq uint64, payload []byte) error {
		n, recs, err := payloadRecords(payload)
		if err != nil {
			return fmt.Errorf("spool frame %d: %w", seq, err)
		}
		return fn(seq, n, recs, payload)
	})
}

// readPayloads calls fn for every frame's payload with from <= seq < to,
// in order.
func (s *spool) readPayloads(from, to uint64, fn func(seq uint64, payload []byte) error) error {
	s.mu.Lock()
	segs := slices.Clone(s.segs)
	s.mu.Unlock()
	count := func(seq uint64, payload []byte) error {
		s.framesRead.Add(1)
		return fn(seq, payload)
	}
	for _, seg := range segs {
		if seg.last < from || seg.first >= to || seg.size == 0 {
			continue
		}
		if err := readSegment(seg, from, to, count); err != nil {
			return err
		}
	}
	return nil
}

// payloadRecords splits a frame payload (encodeBatch) into its record
// count and its records' bytes.
func payloadRecords(payload []byte) (n int, recs []byte, err error) {
	_, k := binary.Uvarint(payload)
	if k <= 0 {
		return 0, nil, errors.New("no seq")
	}
	payload = payload[k:]
	c, k := binary.Uvarint(payload)
	if k <= 0 || c > uint64(len(payload)) {
		return 0, nil, errors.New("bad count")
	}
	return int(c), payload[k:], nil
}

// readSegment reads seg's valid frames (its size as last known: never
// the zero tail or a previous life's frames behind them).
func readSegment(seg segment, from, to uint64, fn func(uint64, []byte) error) error {
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, seg.hdr, seg.size), 1<<20)
	for {
		seq, payload, _, err := readFrame(r, seg.salt, seg.hdr > 0)
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
		if err := fn(seq, payload); err != nil {
			return err
		}
	}
}

// missing returns an error naming the first frames from from on that no
// segment holds although a later frame is spooled (a segment lost or
// corrupt in the middle); frames before the first segment are the
// caller's to judge.
func (s *spool) missing(from uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.segs); i++ {
		prev, seg := s.segs[i-1], s.segs[i]
		if seg.first > prev.last+1 && seg.first > from {
			lo := max(prev.last+1, from)
			return fmt.Errorf("spool: frames %d to %d are missing (the valid frames of %s end at %d, %s starts at %d): a segment was lost or is corrupt; move the spool away to start", lo, seg.first-1, prev.path, prev.last, seg.path, seg.first)
		}
	}
	return nil
}

// skipTo makes seq the next frame's seq if it is higher (s.next and
// everything below it are stored already: the store's head is ahead of
// the spool, e.g. after the spool directory was moved away).
func (s *spool) skipTo(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.next {
		s.next = seq
		s.released = max(s.released, seq)
	}
}

// close closes the active segment and stops the preparer.
func (s *spool) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	var errs []error
	if s.active != nil {
		errs = append(errs, s.active.Close())
		s.active = nil
	}
	for _, r := range s.retired {
		errs = append(errs, r.Close())
	}
	s.retired = nil
	s.mu.Unlock()
	<-s.done
	return errors.Join(errs...)
}
