package duckstore

// InlinedStrings is how many VARCHAR values s's writers put straight into
// DuckDB's vectors (strfill.go) instead of through duckdb-go's call.
func InlinedStrings(s *Store) int64 {
	var n int64
	for _, w := range s.writers {
		n += w.inlined.Load()
	}
	return n
}
