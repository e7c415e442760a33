// Package ratelimitsidecar is the rate-limit sidecar: Envoy's RLS v3 gRPC service
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) over
// ratelimit.Service, with its config sources — an envoyproxy/ratelimit
// YAML directory and an EdgeRoute spec directory (both reloaded when they
// change), and the control plane over xDS (RateLimitConfig resources, and
// TypedExtensionConfig resources named contract.RateLimitPrefix+<spec>
// carrying ratelimit.SpecRules, authoritative for domain "gatehouse") —
// the memory or Redis backend, and the admin HTTP server and gRPC health
// of internal/telemetry.
//
// It is thin: decisions live in package ratelimit, Redis in
// ratelimit/redisstore. It must not import the control plane (the wire
// contract is package contract, the xDS client internal/xdsclient), nor
// other sidecars.
package ratelimitsidecar
