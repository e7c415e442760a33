// Package accesslog owns Gatehouse's access-log pipeline as a library: the
// flat Record schema, the per-spec settings compiled from EdgeRoute specs
// (Compile), conversion of Envoy ALS v3 entries into records with
// redaction applied before anything is buffered, the Ingester (bounded
// in-memory buffer, on-disk spool segment log, batched store writes with a
// hash chain), chain verification, the query filter language and the
// metrics of all of it.
//
// It has no flags, listeners or globals: stores, loggers, registries and
// clocks are injected. It must not import the sidecars, the control plane,
// cmd/ or any store driver; store backends live in subpackages
// (accesslog/duckstore, accesslog/chstore) and implement Store.
package accesslog
