// Package ratelimit owns rate-limit decisions: the descriptor tree compiled
// from envoyproxy/ratelimit configuration (package config) and from
// EdgeRoute specs (Compile), most-specific-match lookup with envoyproxy's
// semantics, the three algorithms (fixed window with envoyproxy's Redis key
// format, two-window sliding window, GCRA token bucket), the in-process
// Memory backend, and Service, which answers Envoy's RLS v3
// ShouldRateLimit requests against a Backend.
//
// It has no flags, listeners, goroutines of its own or globals: time comes
// from a Clock, logs from an injected *slog.Logger, metrics are one struct
// registered on an injected *prometheus.Registry. It must not import gRPC
// servers, xDS clients, Redis clients, the sidecars or cmd; backends that
// talk to servers (package redisstore) import it, not the other way round.
package ratelimit
