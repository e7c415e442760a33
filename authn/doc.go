// Package authn owns "who is calling": it turns the credentials of one
// request (a bearer JWT, an API key, the mTLS peer principal Envoy reports)
// into an Identity, or into an *Error with a bounded Code and a safe,
// human-readable detail.
//
// It owns JWT verification (lestrrat-go/jwx/v2 for JWK parsing and the
// EC/EdDSA JWS signatures, crypto/rsa called directly for RS*/PS*; the
// header and claims are read by a small JSON scanner held to encoding/json
// by differential and fuzz tests, and a claim is decoded only when read;
// issuer, audience, exp/nbf/iat and algorithm pinning are checked here), JWKS key sets (inline, or fetched from a jwksUri with background
// refresh, last-good retention, bounded staleness and a rate-limited,
// single-flight refresh on an unknown kid), the JWKS fetch guard (NewJWKSClient:
// public https only unless an AllowList says otherwise, checked on the
// address actually connected to; same-origin redirects only), API-key lookup
// by SHA-256, mTLS principal globs, and the verified-token cache.
//
// It has no flags, listeners or globals; metrics live in Metrics, registered
// on a registry the caller injects. Tokens and keys never appear in its logs
// or errors. It must not import authz, the sidecars, the control plane or
// anything gRPC/xDS: it sees credentials as plain strings.
package authn
