// Package authz owns "may they": the per-spec policy compiled from an
// EdgeRoute (Compile → SpecPolicy, a plain JSON-serializable value the
// control plane ships over xDS and a sidecar builds from --spec-dir), and
// the runtime Engine that turns a Request into a Decision: route lookup,
// authentication through authn's providers (the first provider of anyOf
// whose credentials are present decides), rules (scopes, claims, CEL
// `when`, first match decides), shadow mode, response headers, the
// RFC 6750 challenge, and the ext_authz dynamic metadata of the wire
// contract.
//
// It has no flags, listeners or globals: the Engine takes its logger,
// registry, HTTP client and clock in Options. It must not import gRPC,
// Envoy protos, xDS, the control plane or the sidecars: the sidecar maps
// CheckRequest/CheckResponse to Request/Decision.
package authz
