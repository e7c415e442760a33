// Package frontdoor is the front door of `gatehouse dev`: an HTTP
// listener that plays one Envoy node of a node group. A Node follows
// exactly the xDS such an Envoy receives (LDS, RDS, CDS, EDS over one ADS
// stream, ACKs and NACKs included); a Door takes a request through the
// node's HTTP connection manager as Envoy would — the HTTP filters in
// their configured order (header_mutation, ext_authz, ratelimit, router),
// the sidecar calls Envoy's ext_authz, ratelimit and gRPC access-log
// filters make, then the upstream. Everything comes from the xDS the node
// holds; the package knows nothing about specs.
//
// It exists so that `make run` can be tried with curl on a machine with no
// Envoy, and so the end-to-end tests play a node honestly. Production runs
// Envoy. Sidecar and xDS dials take grpc.DialOption, so TLS is the
// caller's choice. It must not import the control plane, the sidecars or
// the spec package.
package frontdoor
