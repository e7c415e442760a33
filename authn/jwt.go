package authn

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// DefaultMaxTokenSize caps the bytes of a bearer token.
const DefaultMaxTokenSize = 8 << 10

// asymmetric is every algorithm a provider may pin: never none, never HMAC.
var asymmetric = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// JWTConfig is one JWT provider.
type JWTConfig struct {
	Name       string
	Issuer     string
	Audiences  []string
	Algorithms []string      // pinned; default RS256, ES256, EdDSA
	ClockSkew  time.Duration // for exp, nbf and iat
	// MaxTokenSize caps the token (default DefaultMaxTokenSize).
	MaxTokenSize int
	// Fingerprint identifies this configuration in the token cache; two
	// providers share cached tokens only when their fingerprints are equal.
	// Default: derived from the fields above.
	Fingerprint string
}

// JWT verifies bearer tokens of one issuer.
type JWT struct {
	cfg       JWTConfig
	algs      map[string]bool
	auds      map[string]bool
	verifiers map[string]jws.Verifier // jwx verifiers, stateless, one per pinned algorithm
	keys      KeySource
	cache     *TokenCache
	clock     func() time.Time
}

// NewJWT builds a provider. cache may be nil (no caching); clock nil means
// time.Now.
func NewJWT(cfg JWTConfig, keys KeySource, cache *TokenCache, clock func() time.Time) (*JWT, error) {
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("jwt provider %q: issuer is required", cfg.Name)
	}
	if len(cfg.Audiences) == 0 {
		return nil, fmt.Errorf("jwt provider %q: at least one audience is required", cfg.Name)
	}
	if keys == nil {
		return nil, fmt.Errorf("jwt provider %q: no key source", cfg.Name)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	if cfg.MaxTokenSize <= 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	if cfg.ClockSkew < 0 {
		return nil, fmt.Errorf("jwt provider %q: negative clock skew", cfg.Name)
	}
	p := &JWT{cfg: cfg, algs: map[string]bool{}, auds: map[string]bool{}, verifiers: map[string]jws.Verifier{}, keys: keys, cache: cache, clock: clock}
	for _, a := range cfg.Algorithms {
		if !asymmetric[a] {
			return nil, fmt.Errorf("jwt provider %q: algorithm %q is not allowed (public-key algorithms only; never none or HMAC)", cfg.Name, a)
		}
		v, err := jws.NewVerifier(jwa.SignatureAlgorithm(a))
		if err != nil {
			return nil, fmt.Errorf("jwt provider %q: algorithm %q: %w", cfg.Name, a, err)
		}
		p.algs[a] = true
		p.verifiers[a] = v
	}
	for _, a := range cfg.Audiences {
		p.auds[a] = true
	}
	if p.clock == nil {
		p.clock = time.Now
	}
	if p.cfg.Fingerprint == "" {
		b, _ := json.Marshal(cfg)
		sum := sha256.Sum256(b)
		p.cfg.Fingerprint = hex.EncodeToString(sum[:8])
	}
	return p, nil
}

// Name is the provider name.
func (p *JWT) Name() string { return p.cfg.Name }

// Issuer is the issuer the provider accepts.
func (p *JWT) Issuer() string { return p.cfg.Issuer }

// UnverifiedIssuer reads the iss claim of a compact JWS without verifying
// anything, only to pick which of several providers verifies the token;
// "" when the token is too large, malformed or has no string iss.
func UnverifiedIssuer(token string) string {
	if len(token) > DefaultMaxTokenSize*2 {
		return ""
	}
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	p64, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return ""
	}
	var c struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	iss, _ := c.Iss.(string)
	return iss
}

// BearerToken extracts the token of an Authorization header value
// ("Bearer <token>", scheme case-insensitive), and whether there is one.
func BearerToken(authorization string) (string, bool) {
	if len(authorization) < 7 || !strings.EqualFold(authorization[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(authorization[7:])
	return t, t != ""
}

type jwtHeader struct {
	Alg  string
	Kid  string
	Crit int // how many critical extensions the header names
	// jku, x5u, jwk, x5c are deliberately not decoded: keys come only from
	// the provider's configured key source.
}

// parseHeader reads alg, kid and crit by their exact (case-sensitive)
// names, as RFC 7515 requires (encoding/json's struct matching would take
// "ALG" for "alg"); a repeated name: the last one counts. The header must
// be a valid JSON object; alg and kid strings (null counts as absent), crit
// an array of strings.
func parseHeader(b []byte) (jwtHeader, error) {
	var h jwtHeader
	var buf [8]member
	o, ok := parseObject(b, false, buf[:0])
	if !ok {
		return h, errors.New("header is not a JSON object")
	}
	var err error
	if h.Alg, err = headerString(&o, "alg"); err != nil {
		return h, err
	}
	if h.Kid, err = headerString(&o, "kid"); err != nil {
		return h, err
	}
	if v := o.find("crit"); v != nil && v[0] != 'n' {
		n, ok := stringArrayLen(v)
		if !ok {
			return h, errors.New("header crit has the wrong type")
		}
		h.Crit = n
	}
	return h, nil
}

// headerString is the header member name: a string, or "" when absent or
// null.
func headerString(o *jsonObject, name string) (string, error) {
	switch v := o.find(name); {
	case v == nil || v[0] == 'n':
		return "", nil
	case v[0] == '"':
		return decodeString(v), nil
	}
	return "", fmt.Errorf("header %s has the wrong type", name)
}

// stringArrayLen is the length of a valid JSON array whose elements are
// strings or nulls (what encoding/json decodes into a []string); ok is
// false for anything else.
func stringArrayLen(raw []byte) (int, bool) {
	if raw[0] != '[' {
		return 0, false
	}
	s := scanner{b: raw, i: 1}
	s.ws()
	if s.b[s.i] == ']' {
		return 0, true
	}
	n := 0
	for {
		s.ws()
		if c := s.b[s.i]; c != '"' && c != 'n' {
			return 0, false
		}
		s.value()
		n++
		s.ws()
		if s.b[s.i] == ']' {
			return n, true
		}
		s.i++ // ','
	}
}

// Authenticate verifies token and returns the caller. A refusal is an
// *Error; its Detail never contains the token.
func (p *JWT) Authenticate(ctx context.Context, token string) (*Identity, error) {
	if len(token) > p.cfg.MaxTokenSize {
		return nil, p.refuse(CodeTokenTooLarge, fmt.Sprintf("token is %d bytes, over the %d-byte limit", len(token), p.cfg.MaxTokenSize))
	}
	now := p.clock()
	cur := p.keys.Current()
	var gen uint64
	if cur != nil {
		gen = cur.gen
	}
	var key cacheKey
	if p.cache != nil {
		key = newCacheKey(p.cfg.Fingerprint, token)
		if id, refusal := p.cache.get(key, now, gen); id != nil {
			return id, nil
		} else if refusal != nil {
			return nil, refusal
		}
	}
	id, set, err := p.verify(ctx, token, now, cur)
	if err != nil {
		// A refusal that holds for good under these keys (bad signature,
		// expired, wrong issuer or audience, ...) is remembered too, so a
		// client retrying a dead token costs no signature check either.
		if e, ok := err.(*Error); ok && p.cache != nil && set != nil && permanent(e.Code) {
			p.cache.putRefusal(key, e, now, set.gen)
		}
		return nil, err
	}
	if p.cache != nil && set != nil {
		p.cache.put(key, id, now, set.gen)
	}
	return id, nil
}

func (p *JWT) refuse(code, detail string) *Error { return refuse(p.cfg.Name, code, detail) }

func (p *JWT) verify(ctx context.Context, token string, now time.Time, set *KeySet) (*Identity, *KeySet, error) {
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		return nil, nil, p.refuse(CodeUnsupportedToken, "token is a JWE (5 parts); only signed compact JWS tokens are accepted")
	default:
		return nil, nil, p.refuse(CodeMalformedToken, "token is not a compact JWS (header.payload.signature)")
	}
	h64, rest, _ := strings.Cut(token, ".")
	p64, s64, _ := strings.Cut(rest, ".")
	var hbuf [256]byte // a header is read here and not kept: no heap copy
	hb, err := decodeBase64URL(h64, hbuf[:])
	if err != nil || len(hb) == 0 {
		return nil, nil, p.refuse(CodeMalformedToken, "header is not base64url")
	}
	hdr, err := parseHeader(hb)
	if err != nil {
		return nil, nil, p.refuse(CodeMalformedToken, err.Error())
	}
	if hdr.Alg == "" || strings.EqualFold(hdr.Alg, "none") {
		return nil, nil, p.refuse(CodeAlgorithmRefused, "unsigned tokens (alg none or missing) are never accepted")
	}
	if !p.algs[hdr.Alg] {
		return nil, nil, p.refuse(CodeAlgorithmRefused, fmt.Sprintf("algorithm %s is not one this provider accepts (%s)", safeShort(hdr.Alg), strings.Join(p.cfg.Algorithms, ", ")))
	}
	if p64 == "" || s64 == "" {
		return nil, nil, p.refuse(CodeMalformedToken, "token has an empty payload or signature")
	}
	var sbuf [512]byte // an RSA-4096 signature
	sig, err := decodeBase64URL(s64, sbuf[:])
	if err != nil {
		return nil, nil, p.refuse(CodeMalformedToken, "signature is not base64url")
	}
	if hdr.Crit > 0 {
		return nil, nil, p.refuse(CodeUnsupportedToken, "token has critical header extensions this verifier does not understand")
	}

	var k *verifyKey
	var why string
	if set != nil {
		k, why = set.find(hdr.Kid, hdr.Alg)
	}
	if k == nil && why == "" {
		// Unknown kid (or no keys yet): the key source may refresh, at
		// most once per its interval however many tokens ask.
		set = p.keys.RefreshForKID(ctx, hdr.Kid)
		if set == nil {
			return nil, nil, p.refuse(CodeKeysUnavailable, "the provider's signing keys are not available")
		}
		k, why = set.find(hdr.Kid, hdr.Alg)
	}
	if why != "" {
		return nil, nil, p.refuse(CodeKeyRefused, "the signing key is refused: "+why)
	}
	if k == nil {
		return nil, nil, p.refuse(CodeUnknownKey, "no key of the provider matches the token's kid and algorithm")
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return nil, nil, p.refuse(CodeMalformedToken, "payload is not base64url")
	}
	// The signing input is the token up to the last dot, verified with the
	// key and algorithm chosen above, never with keys named by the token.
	if err := p.verifySignature(hdr.Alg, token[:len(h64)+1+len(p64)], sig, k.raw); err != nil {
		return nil, set, p.refuse(CodeBadSignature, "signature does not verify")
	}
	id, err := p.claims(payload, now)
	if err != nil {
		return nil, set, err
	}
	return id, set, nil
}

// decodeBase64URL decodes unpadded base64url s into buf when it fits,
// else into a new slice.
func decodeBase64URL(s string, buf []byte) ([]byte, error) {
	n := base64.RawURLEncoding.DecodedLen(len(s))
	if n > len(buf) {
		return base64.RawURLEncoding.DecodeString(s)
	}
	n, err := base64.RawURLEncoding.Decode(buf[:n], unsafe.Slice(unsafe.StringData(s), len(s))) // Decode only reads s
	return buf[:n], err
}

// verifySignature checks sig over input with key for alg. RSA algorithms
// call crypto/rsa directly, as jwx's verifier does (PKCS #1 v1.5, or PSS
// with the salt length taken from the signature), without its copy of the
// key and its hash allocations; the others go through jwx.
func (p *JWT) verifySignature(alg, input string, sig []byte, key any) error {
	var h crypto.Hash
	switch alg {
	case "RS256", "PS256":
		h = crypto.SHA256
	case "RS384", "PS384":
		h = crypto.SHA384
	case "RS512", "PS512":
		h = crypto.SHA512
	default:
		// A copy: jwx's verifier is an interface, so sig would escape.
		return p.verifiers[alg].Verify([]byte(input), bytes.Clone(sig), key)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return errors.New("not an RSA public key")
	}
	var sum [sha512.Size]byte
	n := hashString(h, input, &sum)
	if alg[0] == 'P' {
		return rsa.VerifyPSS(pub, h, bytes.Clone(sum[:n]), sig, nil) // a copy: VerifyPSS lets it escape
	}
	return rsa.VerifyPKCS1v15(pub, h, sum[:n], sig)
}

// hashString writes h(input) into sum and returns its length, reading the
// string in place.
func hashString(h crypto.Hash, input string, sum *[sha512.Size]byte) int {
	b := unsafe.Slice(unsafe.StringData(input), len(input)) // the hash only reads it
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(b)
		return copy(sum[:], s[:])
	case crypto.SHA384:
		s := sha512.Sum384(b)
		return copy(sum[:], s[:])
	default:
		s := sha512.Sum512(b)
		return copy(sum[:], s[:])
	}
}

func (p *JWT) claims(payload []byte, now time.Time) (*Identity, error) {
	var buf [16]member // the member index is copied into the identity
	o, ok := parseObject(payload, true, buf[:0])
	if !ok {
		return nil, p.refuse(CodeMalformedToken, "payload is not a JSON object")
	}
	skew := p.cfg.ClockSkew
	if !stringIs(o.find("iss"), p.cfg.Issuer) {
		return nil, p.refuse(CodeIssuerMismatch, "token issuer is not the provider's issuer")
	}
	if !p.audienceRawOK(o.find("aud")) {
		return nil, p.refuse(CodeAudienceMismatch, "token audience is not one the provider accepts")
	}
	expRaw := o.find("exp")
	if expRaw == nil {
		return nil, p.refuse(CodeMissingExp, "token has no exp claim; tokens must expire")
	}
	exp, ok := numericDateRaw(expRaw)
	if !ok {
		return nil, p.refuse(CodeInvalidClaims, "exp is not a NumericDate")
	}
	if !now.Before(exp.Add(skew)) {
		return nil, p.refuse(CodeExpired, "token expired")
	}
	if v := o.find("nbf"); v != nil {
		nbf, ok := numericDateRaw(v)
		if !ok {
			return nil, p.refuse(CodeInvalidClaims, "nbf is not a NumericDate")
		}
		if now.Add(skew).Before(nbf) {
			return nil, p.refuse(CodeNotYetValid, "token is not valid yet (nbf in the future)")
		}
	}
	if v := o.find("iat"); v != nil {
		iat, ok := numericDateRaw(v)
		if !ok {
			return nil, p.refuse(CodeInvalidClaims, "iat is not a NumericDate")
		}
		if now.Add(skew).Before(iat) {
			return nil, p.refuse(CodeIssuedInFuture, "token was issued in the future (iat)")
		}
	}
	id := &Identity{Provider: p.cfg.Name, Kind: KindJWT, ExpiresAt: exp}
	if v := o.find("sub"); v != nil {
		if v[0] != '"' {
			return nil, p.refuse(CodeInvalidClaims, "sub is not a string")
		}
		id.Subject = decodeString(v)
	}
	id.Scopes = scopes(&o)
	// The identity keeps the payload and its member index (no pointers for
	// the GC to follow) and decodes a claim when a rule, header or metadata
	// entry reads it.
	id.jwt = newJWTClaims(payload, o.members)
	return id, nil
}

func (p *JWT) audienceOK(v any) bool {
	switch a := v.(type) {
	case string:
		return p.auds[a]
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && p.auds[s] {
				return true
			}
		}
	}
	return false
}

// audienceRawOK is audienceOK of a raw JSON value (nil: absent), without
// decoding a plain string.
func (p *JWT) audienceRawOK(v []byte) bool {
	switch {
	case v == nil:
		return false
	case v[0] == '"' && plainString(v):
		return p.auds[string(v[1:len(v)-1])]
	}
	return p.audienceOK(decodeValue(v))
}

// numericDateRaw is numericDate of a raw JSON value.
func numericDateRaw(v []byte) (time.Time, bool) {
	if c := v[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, false
	}
	f, _ := parseNumber(v) // valid and in range by the scan
	return numericDate(f)
}

func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// scopes reads "scope" (space-separated string) or "scp" (array or string).
func scopes(o *jsonObject) []string {
	if v := o.find("scope"); v != nil && v[0] == '"' {
		return strings.Fields(decodeString(v))
	}
	switch v := o.value("scp").(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// permanent reports whether a refusal holds for as long as the key set
// and provider configuration do: such refusals may be cached.
func permanent(code string) bool {
	switch code {
	case CodeBadSignature, CodeExpired, CodeIssuerMismatch, CodeAudienceMismatch, CodeMissingExp, CodeInvalidClaims:
		return true
	}
	return false
}

// safeShort quotes at most 16 bytes of an attacker-controlled value for an
// error message.
func safeShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return fmt.Sprintf("%q", s)
}
