package xds

import (
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"unsafe"
	"weak"
)

// weakIndex is the table under the interning of request names
// (canonStrings) and of name lists (nameSets): values by a seeded hash,
// held through weak pointers, so an entry keeps nothing alive and a
// value is found again for as long as anything else holds it; a cleanup
// drops an entry once its value is collected. n is the value's length
// (bytes of a string, names of a list), compared before the value is.
type weakIndex[T any] struct {
	mu sync.Mutex
	m  map[uint64][]weakRef[T]
}

type weakRef[T any] struct {
	p weak.Pointer[T]
	n int
}

func newWeakIndex[T any]() *weakIndex[T] {
	return &weakIndex[T]{m: map[uint64][]weakRef[T]{}}
}

// add records v, of hash h and length n, and the entries of h already
// collected are dropped. Caller holds mu.
func (x *weakIndex[T]) add(h uint64, n int, v *T) {
	x.m[h] = append(slices.DeleteFunc(x.m[h], weakRef[T].dead), weakRef[T]{weak.Make(v), n})
	runtime.AddCleanup(v, x.forget, h)
}

func (r weakRef[T]) dead() bool { return r.p.Value() == nil }

// forget drops the collected entries of hash h (v's cleanup).
func (x *weakIndex[T]) forget(h uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if live := slices.DeleteFunc(x.m[h], weakRef[T].dead); len(live) == 0 {
		delete(x.m, h)
	} else {
		x.m[h] = live
	}
}

// size is the number of entries, collected ones not yet dropped
// included (tests).
func (x *weakIndex[T]) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, l := range x.m {
		n += len(l)
	}
	return n
}

// canonStrings makes strings canonical: the same bytes give the same
// string (the same data) for as long as any string of it is reachable,
// across garbage collections. unique.Make does not do that for a caller
// that keeps only the string: it keeps a canonical entry while a Handle
// is reachable, so after a collection every name is cloned again. Here
// the entry is a weak pointer to the string's own data (which any copy
// or substring of the string keeps alive), keyed by a hash of its bytes,
// never by the string (a map key would keep every name alive for ever).
//
// A string under 16 bytes may share its allocation with other small
// strings (the runtime's tiny allocator): its entry then lives as long
// as the allocation does, which is bounded by what is live, and its
// bytes stay valid while it is found.
type canonStrings struct {
	seed maphash.Seed
	idx  *weakIndex[byte]
}

func newCanonStrings() *canonStrings {
	return &canonStrings{seed: maphash.MakeSeed(), idx: newWeakIndex[byte]()}
}

// bytes is the canonical string of b: found without allocating when a
// string of it is live, else a copy of b that becomes the canonical one.
func (t *canonStrings) bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := maphash.Bytes(t.seed, b)
	t.idx.mu.Lock()
	defer t.idx.mu.Unlock()
	for _, r := range t.idx.m[h] {
		if r.n != len(b) {
			continue
		}
		// A nil Value is an entry whose string was collected and whose
		// cleanup has not run yet: absent.
		if p := r.p.Value(); p != nil {
			if s := unsafe.String(p, r.n); s == string(b) {
				return s
			}
		}
	}
	s := string(b)
	t.idx.add(h, len(s), unsafe.StringData(s))
	return s
}

// string is the canonical string of s; when there is none yet, a copy
// of s becomes it (s may be part of a larger allocation, which the
// canonical string must not keep alive).
func (t *canonStrings) string(s string) string {
	return t.bytes(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// size is the number of strings in the table (tests).
func (t *canonStrings) size() int { return t.idx.size() }
