package accesslog

import "testing"

// TestBufPool: get hands out the smallest kept buffer that fits (else a
// new one of the size asked), empty; put keeps up to max buffers, then
// keeps the larger ones, and no more than maxBytes of them; a poisoned
// pool overwrites what it is given.
func TestBufPool(t *testing.T) {
	p := &bufPool{max: 2, maxBytes: 1 << 20}
	if b := p.get(100); len(b) != 0 || cap(b) != 100 {
		t.Fatalf("new buffer: len %d cap %d", len(b), cap(b))
	}
	p.put(make([]byte, 10, 300))
	p.put(make([]byte, 20, 200))
	p.put(make([]byte, 0, 50)) // over max, smaller than both: dropped
	if len(p.bufs) != 2 {
		t.Fatalf("%d buffers kept, want 2", len(p.bufs))
	}
	if b := p.get(150); cap(b) != 200 || len(b) != 0 {
		t.Fatalf("get(150): cap %d len %d, want the 200 one, empty", cap(b), len(b))
	}
	if b := p.get(400); cap(b) != 400 || len(p.bufs) != 1 {
		t.Fatalf("get(400): cap %d, %d kept; want a new one and the 300 one kept", cap(b), len(p.bufs))
	}
	p.put(make([]byte, 0, 500))
	p.put(make([]byte, 0, 600)) // over max: replaces the 300 one
	if len(p.bufs) != 2 || cap(p.bufs[0])+cap(p.bufs[1]) != 1100 {
		t.Fatalf("kept %d buffers", len(p.bufs))
	}
	p.put(nil) // nothing to keep
	if len(p.bufs) != 2 || p.bytes != 1100 {
		t.Fatalf("kept %d buffers, %d bytes", len(p.bufs), p.bytes)
	}
	r := &bufPool{max: 10, maxBytes: 1000}
	r.put(make([]byte, 0, 600))
	r.put(make([]byte, 0, 500)) // over maxBytes: dropped
	r.put(make([]byte, 0, 400))
	if len(r.bufs) != 2 || r.bytes != 1000 {
		t.Fatalf("byte bound: kept %d buffers, %d bytes", len(r.bufs), r.bytes)
	}
	if b := r.get(1); cap(b) != 400 || r.bytes != 600 {
		t.Fatalf("get(1): cap %d, %d bytes kept", cap(b), r.bytes)
	}
	q := &bufPool{max: 1, maxBytes: 100, poison: true}
	b := append(make([]byte, 0, 8), "secret"...)
	q.put(b)
	if string(b[:cap(b)]) != "\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5" {
		t.Fatalf("poisoned buffer holds %q", b[:cap(b)])
	}
}
