// Package authzsidecar is the authz sidecar: Envoy's ext_authz v3 gRPC service
// (envoy.service.auth.v3.Authorization/Check) over the authz Engine, fed
// with policies from a spec directory (authz.Compile) or from the control
// plane over xDS (TypedExtensionConfig resources named
// contract.AuthzPrefix+<spec>, via internal/xdsclient), with the admin
// HTTP server and gRPC health of internal/telemetry.
//
// It is thin: it maps CheckRequest to authz.Request and authz.Decision to
// CheckResponse (on the wire, through its own gRPC codec: request.go,
// wire.go), and wires config, listeners and metrics. Decisions live in
// package authz, credentials in package authn. It must not import the
// control plane (the wire contract is package contract, the xDS client
// internal/xdsclient), nor other sidecars.
package authzsidecar
