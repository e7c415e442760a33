package duckstore

import (
	"fmt"
	"unicode/utf8"
	"unsafe"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// DuckDB keeps a VARCHAR vector as an array of duckdb_string_t, 16 bytes
// each: a uint32 length, then either the string itself (up to 12 bytes,
// the rest zero) or a 4-byte prefix and a pointer to the bytes. duckdb-go
// writes a string with one cgo call (duckdb_vector_assign_string_element_len,
// which copies it into the vector's string heap); a string of up to 12
// bytes needs no heap and no call: its bytes go into the array directly.
// Longer strings still take the call: their bytes must live in memory
// DuckDB may keep a pointer to, which Go memory is not.
const (
	stringTSize     = 16
	stringTInline   = 12
	stringTInlineAt = 4
)

// stringSlots returns the duckdb_string_t array of column col of c, whose
// size is already set to n (n >= 2), or false when it cannot be found
// exactly (then the caller writes every value with the library's call).
//
// duckdb-go does not export a vector's data pointer, but its VectorView
// borrows an inlined string from where it lies in the array. Two marker
// strings written with the library's own call into rows 0 and 1 (which
// the caller then overwrites) locate the array: the borrowed bytes sit 4
// bytes into their slots, the slots are 16 bytes apart, and each slot
// starts with the marker's length. Anything else (another layout in a
// future duckdb-go) and the array is not used.
func stringSlots(c *duckdb.DataChunk, col, n int) (unsafe.Pointer, bool) {
	if n < 2 {
		return nil, false
	}
	if duckdb.SetChunkValue(*c, col, 0, "a") != nil || duckdb.SetChunkValue(*c, col, 1, "bc") != nil {
		return nil, false
	}
	vec, err := c.GetVector(col)
	if err != nil {
		return nil, false
	}
	view, err := duckdb.GetVectorView[string](vec)
	if err != nil || view.Len() != n {
		return nil, false
	}
	s0, ok0, err0 := view.GetValueBorrowed(0)
	s1, ok1, err1 := view.GetValueBorrowed(1)
	if !ok0 || !ok1 || err0 != nil || err1 != nil || s0 != "a" || s1 != "bc" {
		return nil, false
	}
	p0, p1 := unsafe.Pointer(unsafe.StringData(s0)), unsafe.Pointer(unsafe.StringData(s1))
	if uintptr(p1)-uintptr(p0) != stringTSize {
		return nil, false
	}
	base := unsafe.Add(p0, -stringTInlineAt)
	if uintptr(base)%8 != 0 || *(*uint32)(base) != 1 || *(*uint32)(unsafe.Add(base, stringTSize)) != 2 {
		return nil, false
	}
	return base, true
}

// putInline writes s (at most 12 bytes) into the duckdb_string_t at slot:
// length, bytes, zeros (DuckDB compares inlined strings by all 16 bytes).
func putInline(slot unsafe.Pointer, s string) {
	*(*uint32)(slot) = uint32(len(s))
	b := (*[stringTInline]byte)(unsafe.Add(slot, stringTInlineAt))
	clear(b[copy(b[:], s):])
}

// fillStrings writes get(record) into the VARCHAR column col of every
// row: short valid UTF-8 strings straight into the vector, the others
// (longer than 12 bytes, or not UTF-8: DuckDB's call decides what those
// become) with duckdb-go's call. It returns how many went in directly.
func fillStrings(c *duckdb.DataChunk, col int, recs []accesslog.Record, get func(*accesslog.Record) string) (int, error) {
	base, direct := stringSlots(c, col, len(recs))
	n := 0
	for j := range recs {
		s := get(&recs[j])
		if direct && len(s) <= stringTInline && utf8.ValidString(s) {
			putInline(unsafe.Add(base, j*stringTSize), s)
			n++
			continue
		}
		if err := duckdb.SetChunkValue(*c, col, j, s); err != nil {
			return n, fmt.Errorf("row %d: %w", j, err)
		}
	}
	return n, nil
}
