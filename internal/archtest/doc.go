// Package archtest holds no code: its test enforces the import rules the
// package docs write down ("must not import ...", "imports no Gatehouse
// package"), plus the layering rule that the libraries (authn, authz,
// ratelimit, accesslog, spec and their subpackages) import no role package
// (broker, controlplane, sidecars, dev, cmd, frontdoor). A rule added to a
// package doc belongs in the test's table too. TestTableRowsKeyed keeps
// test tables keyed: a row of three or more fields in a table of an
// anonymous struct (slice, array or map value) is written field: value,
// so its zero values can be left out; two-field rows may stay positional.
// TestNoImportAliases keeps one name per Gatehouse package: no import of
// one carries another name (a blank import may).
// It imports nothing.
package archtest
