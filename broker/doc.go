// Package broker runs the Open Service Broker role: the OSB v2.17 HTTP API
// (package api) over a store and a queue opened from URLs (package
// backend), plus the outbox sweeper that re-enqueues every operation the
// queue never got. It owns the broker process wiring only; the domain lives
// in its subpackages. It must not import controlplane, sidecars or any
// enforcement library (authn, authz, ratelimit, accesslog).
package broker
