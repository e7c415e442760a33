// Package spec is the EdgeRoute v1 contract product teams write
// (docs/ROUTE_SPEC.md): the document types, loading YAML and JSON with
// line numbers (Parse, Load), and validation that names every problem
// with its file, line and field path (Validate, ValidateOne, Policy for
// the operator's upstream rules). Every other component reads specs
// through it, so the same input gives the same errors in the broker, the
// control plane, the sidecars and `gatehouse spec validate`.
//
// It does no I/O beyond reading the bytes and files it is given, keeps no
// global state, and must not import any other Gatehouse package.
package spec
