package accesslog

// SpoolActive describes the spool's active segment for tests: its file,
// its first and last frame, the bytes of its frames and of the file, and
// whether the file was recycled from stored frames.
func SpoolActive(in *Ingester) (path string, first, last uint64, size, fileSize int64, recycled bool) {
	s := in.spool
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil || len(s.segs) == 0 {
		return "", 0, 0, 0, 0, false
	}
	seg := s.segs[len(s.segs)-1]
	return seg.path, seg.first, seg.last, seg.hdr + seg.size, seg.filled, seg.recycled
}

// BatchHashFrames is batchHashFrames: BatchHash over encoded records.
var BatchHashFrames = batchHashFrames

// DecodeFrames decodes b.Frames into dst's array (a store that does not
// read frames gets its Records so).
func DecodeFrames(b *Batch, dst []Record) ([]Record, error) { return b.decodeFrames(dst) }

// RecordTimes is recordTimes: the earliest and latest Time of n encoded
// records.
var RecordTimes = recordTimes

// PoisonFrameBuffers makes in overwrite every frame buffer given back for
// reuse, so a batch still reading one reads garbage; call it before Run.
func PoisonFrameBuffers(in *Ingester) { in.frameBufs.poison = true }
