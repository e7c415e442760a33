package authn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

const (
	testIssuer = "https://idp.test/"
	testAud    = "petstore"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

var (
	keyOnce             sync.Once
	rsaKey, rsa1024, ec *authntest.Key
	attacker            *authntest.Key
)

func keys() {
	keyOnce.Do(func() {
		rsaKey = authntest.NewRSA("k1", 2048)
		rsa1024 = authntest.NewRSA("weak", 1024)
		ec = authntest.NewEC("e1")
		attacker = authntest.NewRSA("k1", 2048) // same kid as the real key
	})
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": testIssuer, "aud": []string{"other", testAud}, "sub": "alice",
		"exp": t0.Add(time.Hour).Unix(), "iat": t0.Add(-time.Minute).Unix(), "nbf": t0.Add(-time.Minute).Unix(),
		"scope": "pets:read pets:write",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func staticProvider(t testing.TB, clk *clock, cache *TokenCache, jwksDoc []byte) *JWT {
	t.Helper()
	ks, err := NewStaticKeys(jwksDoc)
	if err != nil {
		t.Fatalf("NewStaticKeys: %v", err)
	}
	p, err := NewJWT(JWTConfig{Name: "corp", Issuer: testIssuer, Audiences: []string{testAud},
		Algorithms: []string{"RS256", "ES256"}, ClockSkew: 30 * time.Second}, ks, cache, clk.Now)
	if err != nil {
		t.Fatalf("NewJWT: %v", err)
	}
	return p
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return "not an *Error: " + err.Error()
	}
	return ""
}

func TestJWTSecurity(t *testing.T) {
	keys()
	clk := newClock(t0)
	p := staticProvider(t, clk, nil, authntest.JWKS(rsaKey, ec))

	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	hs256WithPublicKey := func() string {
		tok := authntest.Unsigned(map[string]any{"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims(nil), nil)
		input := tok[:strings.LastIndex(tok, ".")]
		m := hmac.New(sha256.New, pubDER)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	jweToken := func() string {
		b, err := jwe.Encrypt([]byte(`{"iss":"`+testIssuer+`"}`), jwe.WithKey(jwa.RSA_OAEP_256, rsaKey.Public()))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	big := strings.Repeat("x", DefaultMaxTokenSize)

	cases := []struct {
		name  string
		token string
		want  string // "" = accepted
	}{
		{name: "valid RS256", token: rsaKey.Sign(claims(nil), nil)},
		{name: "valid ES256", token: ec.Sign(claims(nil), nil)},
		{name: "alg none", token: authntest.Unsigned(map[string]any{"alg": "none", "kid": "k1"}, claims(nil), nil), want: CodeAlgorithmRefused},
		{name: "alg NoNe", token: authntest.Unsigned(map[string]any{"alg": "NoNe", "kid": "k1"}, claims(nil), []byte("x")), want: CodeAlgorithmRefused},
		{name: "alg missing", token: authntest.Unsigned(map[string]any{"kid": "k1"}, claims(nil), []byte("x")), want: CodeAlgorithmRefused},
		{name: "ALG is not alg", token: authntest.Unsigned(map[string]any{"ALG": "RS256", "kid": "k1"}, claims(nil), []byte("x")), want: CodeAlgorithmRefused},
		{name: "alg not a string", token: authntest.Unsigned(map[string]any{"alg": 256, "kid": "k1"}, claims(nil), []byte("x")), want: CodeMalformedToken},
		{name: "header not an object", token: "WyJhIl0." + strings.SplitN(rsaKey.Sign(claims(nil), nil), ".", 2)[1], want: CodeMalformedToken},
		{name: "HS256 signed with the RSA public key", token: hs256WithPublicKey(), want: CodeAlgorithmRefused},
		{name: "algorithm not pinned (RS512)", token: func() string {
			k := *rsaKey
			k.Alg = jwa.RS512
			return k.Sign(claims(nil), nil)
		}(), want: CodeAlgorithmRefused},
		{name: "jku header pointing elsewhere", token: attacker.Sign(claims(nil), map[string]any{"jku": "https://evil.test/jwks.json"}), want: CodeBadSignature},
		{name: "x5u header pointing elsewhere", token: attacker.Sign(claims(nil), map[string]any{"x5u": "https://evil.test/cert.pem"}), want: CodeBadSignature},
		{name: "embedded jwk header", token: attacker.Sign(claims(nil), map[string]any{"jwk": attacker.PublicJWK()}), want: CodeBadSignature},
		{name: "no exp", token: rsaKey.Sign(claims(func(c map[string]any) { delete(c, "exp") }), nil), want: CodeMissingExp},
		{name: "exp not a number", token: rsaKey.Sign(claims(func(c map[string]any) { c["exp"] = "tomorrow" }), nil), want: CodeInvalidClaims},
		{name: "expired", token: rsaKey.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(-time.Minute).Unix() }), nil), want: CodeExpired},
		{name: "expired within skew", token: rsaKey.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(-10 * time.Second).Unix() }), nil)},
		{name: "nbf in the future", token: rsaKey.Sign(claims(func(c map[string]any) { c["nbf"] = t0.Add(time.Minute).Unix() }), nil), want: CodeNotYetValid},
		{name: "nbf within skew", token: rsaKey.Sign(claims(func(c map[string]any) { c["nbf"] = t0.Add(20 * time.Second).Unix() }), nil)},
		{name: "iat in the future", token: rsaKey.Sign(claims(func(c map[string]any) { c["iat"] = t0.Add(time.Hour).Unix() }), nil), want: CodeIssuedInFuture},
		{name: "wrong aud", token: rsaKey.Sign(claims(func(c map[string]any) { c["aud"] = "billing" }), nil), want: CodeAudienceMismatch},
		{name: "aud missing", token: rsaKey.Sign(claims(func(c map[string]any) { delete(c, "aud") }), nil), want: CodeAudienceMismatch},
		{name: "aud as string", token: rsaKey.Sign(claims(func(c map[string]any) { c["aud"] = testAud }), nil)},
		{name: "wrong iss", token: rsaKey.Sign(claims(func(c map[string]any) { c["iss"] = "https://evil.test/" }), nil), want: CodeIssuerMismatch},
		{name: "iss missing", token: rsaKey.Sign(claims(func(c map[string]any) { delete(c, "iss") }), nil), want: CodeIssuerMismatch},
		{name: "over the size cap", token: rsaKey.Sign(claims(func(c map[string]any) { c["pad"] = big }), nil), want: CodeTokenTooLarge},
		{name: "JWE", token: jweToken(), want: CodeUnsupportedToken},
		{name: "malformed base64 header", token: "e30!!." + strings.SplitN(rsaKey.Sign(claims(nil), nil), ".", 2)[1], want: CodeMalformedToken},
		{name: "malformed base64 signature", token: rsaKey.Sign(claims(nil), nil) + "*", want: CodeMalformedToken},
		{name: "two parts", token: "abc.def", want: CodeMalformedToken},
		{name: "empty payload", token: "eyJhbGciOiJSUzI1NiJ9..c2ln", want: CodeMalformedToken},
		{name: "tampered payload", token: func() string {
			parts := strings.Split(rsaKey.Sign(claims(nil), nil), ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + testIssuer + `","aud":"petstore","sub":"root","exp":9999999999}`))
			return strings.Join(parts, ".")
		}(), want: CodeBadSignature},
		{name: "crit header", token: rsaKey.Sign(claims(nil), map[string]any{"crit": []string{"exp"}}), want: CodeUnsupportedToken},
		{name: "unknown kid on a static set", token: func() string {
			k := *rsaKey
			k.KID = "nope"
			return k.Sign(claims(nil), nil)
		}(), want: CodeUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := p.Authenticate(context.Background(), tc.token)
			if got := code(err); got != tc.want {
				t.Fatalf("code = %q, want %q (err %v)", got, tc.want, err)
			}
			if tc.want == "" && (id == nil || id.Subject != "alice" || id.Kind != KindJWT) {
				t.Fatalf("identity = %+v", id)
			}
			if err != nil && strings.Contains(err.Error(), tc.token) {
				t.Fatalf("error quotes the token: %v", err)
			}
		})
	}
}

func TestJWTScopesAndClaims(t *testing.T) {
	keys()
	clk := newClock(t0)
	p := staticProvider(t, clk, nil, authntest.JWKS(rsaKey))
	id, err := p.Authenticate(context.Background(), rsaKey.Sign(claims(func(c map[string]any) {
		delete(c, "scope")
		c["scp"] = []string{"a", "b"}
		c["groups"] = []string{"admins"}
	}), nil))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(id.Scopes, ",") != "a,b" {
		t.Fatalf("scopes = %v", id.Scopes)
	}
	if id.ExpiresAt.Unix() != t0.Add(time.Hour).Unix() {
		t.Fatalf("exp = %v", id.ExpiresAt)
	}
}

func TestRSA1024KeyRefused(t *testing.T) {
	keys()
	clk := newClock(t0)
	p := staticProvider(t, clk, nil, authntest.JWKS(rsaKey, rsa1024))
	_, err := p.Authenticate(context.Background(), rsa1024.Sign(claims(nil), nil))
	if code(err) != CodeKeyRefused || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("err = %v, want key_refused naming 1024 bits", err)
	}
	if _, err := ParseKeySet(authntest.JWKS(rsa1024)); err == nil || !strings.Contains(err.Error(), "no usable key") {
		t.Fatalf("a JWKS of only a 1024-bit key parsed: %v", err)
	}
}

func TestNewJWTRefusesWeakConfig(t *testing.T) {
	keys()
	ks, _ := NewStaticKeys(authntest.JWKS(rsaKey))
	for _, alg := range []string{"none", "HS256", "HS512"} {
		if _, err := NewJWT(JWTConfig{Name: "x", Issuer: testIssuer, Audiences: []string{"a"}, Algorithms: []string{alg}}, ks, nil, nil); err == nil {
			t.Errorf("algorithm %s accepted", alg)
		}
	}
	if _, err := NewJWT(JWTConfig{Name: "x", Audiences: []string{"a"}}, ks, nil, nil); err == nil {
		t.Error("provider without issuer accepted")
	}
	if _, err := NewJWT(JWTConfig{Name: "x", Issuer: testIssuer}, ks, nil, nil); err == nil {
		t.Error("provider without audiences accepted")
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
		"Basic abc": "", "Bearer": "", "Bearer ": "", "": "",
	} {
		got, ok := BearerToken(in)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func remoteProvider(t *testing.T, clk *clock, srv *authntest.JWKSServer, m *Metrics, cache *TokenCache) (*JWT, *RemoteJWKS) {
	t.Helper()
	r, err := NewRemoteJWKS(RemoteJWKSConfig{URI: srv.URI(), RefreshInterval: time.Hour, MinRefreshInterval: time.Minute,
		MaxStaleness: 6 * time.Hour, Clock: clk.Now, Metrics: m, Client: NewJWKSClient(mustAllow(t, "127.0.0.1"), 0)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	p, err := NewJWT(JWTConfig{Name: "corp", Issuer: testIssuer, Audiences: []string{testAud}, ClockSkew: 30 * time.Second}, r, cache, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}

func waitFetches(t *testing.T, srv *authntest.JWKSServer, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Fetches() < n {
		if time.Now().After(deadline) {
			t.Fatalf("JWKS fetched %d times, want %d", srv.Fetches(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnknownKidFloodFetchesOnce(t *testing.T) {
	keys()
	clk := newClock(t0)
	srv := authntest.NewJWKSServer(authntest.JWKS(rsaKey))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := remoteProvider(t, clk, srv, m, nil)
	// The first token waits for keys: it may share or trigger the initial fetch.
	if _, err := p.Authenticate(context.Background(), rsaKey.Sign(claims(nil), nil)); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	waitFetches(t, srv, 1)
	base := srv.Fetches()

	// 500 tokens with random kids from 50 goroutines.
	var wg sync.WaitGroup
	var refusals atomic.Int64
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				k := *attacker
				k.KID = "random-" + strings.Repeat("x", g) + string(rune('a'+i))
				if _, err := p.Authenticate(context.Background(), k.Sign(claims(nil), nil)); code(err) == CodeUnknownKey {
					refusals.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if refusals.Load() != 500 {
		t.Fatalf("%d of 500 random-kid tokens refused as unknown_key", refusals.Load())
	}
	if got := srv.Fetches() - base; got > 1 {
		t.Fatalf("a flood of unknown kids caused %d JWKS fetches within one interval, want at most 1", got)
	}
	// After the interval, one more unknown kid may refresh once more.
	clk.Add(2 * time.Minute)
	before := srv.Fetches()
	for i := 0; i < 20; i++ {
		k := *attacker
		k.KID = "later"
		_, _ = p.Authenticate(context.Background(), k.Sign(claims(nil), nil))
	}
	if got := srv.Fetches() - before; got != 1 {
		t.Fatalf("after the interval, unknown kids caused %d fetches, want exactly 1", got)
	}
	if n := testutil.ToFloat64(m.jwksFetches.WithLabelValues(srv.URL+"/jwks.json", "success")); n != float64(srv.Fetches()) {
		t.Fatalf("jwks fetch metric = %v, server saw %d", n, srv.Fetches())
	}
}

func TestJWKSRotationAndLastGood(t *testing.T) {
	keys()
	clk := newClock(t0)
	srv := authntest.NewJWKSServer(authntest.JWKS(rsaKey))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	cache := NewTokenCache(100, time.Hour, m)
	p, r := remoteProvider(t, clk, srv, m, cache)
	old := rsaKey.Sign(claims(nil), nil)
	if _, err := p.Authenticate(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authenticate(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	if hits := testutil.ToFloat64(m.cacheHit); hits != 1 {
		t.Fatalf("cache hits = %v, want 1", hits)
	}

	// A failing refresh keeps the last good set.
	srv.Set([]byte("oops"), 500)
	clk.Add(2 * time.Minute)
	k2 := authntest.NewRSA("k2", 2048)
	if _, err := p.Authenticate(context.Background(), k2.Sign(claims(nil), nil)); code(err) != CodeUnknownKey {
		t.Fatalf("token of an unpublished key: %v", err)
	}
	if _, err := p.Authenticate(context.Background(), rsaKey.Sign(claims(func(c map[string]any) { c["sub"] = "bob" }), nil)); err != nil {
		t.Fatalf("last good set not kept after a failed refresh: %v", err)
	}
	if n := testutil.ToFloat64(m.jwksFetches.WithLabelValues(srv.URL+"/jwks.json", "failure")); n != 1 {
		t.Fatalf("failure metric = %v", n)
	}

	// Rotation: k1 retired, k2 published. The cached k1 token is dropped.
	srv.Set(authntest.JWKS(k2), 200)
	clk.Add(2 * time.Minute)
	if _, err := p.Authenticate(context.Background(), k2.Sign(claims(nil), nil)); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}
	if _, err := p.Authenticate(context.Background(), old); code(err) != CodeUnknownKey {
		t.Fatalf("cached token of a retired key: err = %v, want unknown_key", err)
	}

	// Bounded staleness: with the server failing for longer than
	// MaxStaleness, keys are no longer trusted.
	srv.Set(nil, 503)
	clk.Add(7 * time.Hour)
	if _, err := p.Authenticate(context.Background(), k2.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(10 * time.Hour).Unix() }), nil)); code(err) != CodeKeysUnavailable {
		t.Fatalf("stale keys: err = %v, want keys_unavailable", err)
	}
	if age, ok := r.Age(); !ok || age < 7*time.Hour {
		t.Fatalf("age = %v, %v", age, ok)
	}
	if n, err := testutil.GatherAndCount(reg, "gatehouse_authn_jwks_age_seconds"); err != nil || n != 1 {
		t.Fatalf("jwks age metric: %d series, %v", n, err)
	}
}

func TestTokenCache(t *testing.T) {
	keys()
	clk := newClock(t0)
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	cache := NewTokenCache(2, time.Minute, m)
	p := staticProvider(t, clk, cache, authntest.JWKS(rsaKey))
	tok := rsaKey.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(90 * time.Second).Unix() }), nil)
	for i := 0; i < 3; i++ {
		if _, err := p.Authenticate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if testutil.ToFloat64(m.cacheHit) != 2 || testutil.ToFloat64(m.cacheMiss) != 1 {
		t.Fatalf("hits %v misses %v", testutil.ToFloat64(m.cacheHit), testutil.ToFloat64(m.cacheMiss))
	}
	// TTL (1m) ends before exp: the next lookup misses and re-verifies.
	clk.Add(61 * time.Second)
	if _, err := p.Authenticate(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(m.cacheMiss) != 2 {
		t.Fatalf("expired entry served from cache")
	}
	// exp+skew passed: refused even though it was cached a moment ago.
	clk.Add(60 * time.Second)
	if _, err := p.Authenticate(context.Background(), tok); code(err) != CodeExpired {
		t.Fatalf("expired cached token: %v", err)
	}
	// A provider with another configuration does not share entries.
	other, _ := NewJWT(JWTConfig{Name: "corp", Issuer: testIssuer, Audiences: []string{"billing"}}, p.keys, cache, clk.Now)
	tok2 := rsaKey.Sign(claims(nil), nil)
	clk.ns.Store(t0.UnixNano())
	if _, err := p.Authenticate(context.Background(), tok2); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Authenticate(context.Background(), tok2); code(err) != CodeAudienceMismatch {
		t.Fatalf("cache shared across providers: %v", err)
	}
	if cache.Len() > 2 {
		t.Fatalf("cache holds %d entries, bound is 2", cache.Len())
	}
}

func TestRefusalCache(t *testing.T) {
	keys()
	clk := newClock(t0)
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	cache := NewTokenCache(100, time.Minute, m)
	p := staticProvider(t, clk, cache, authntest.JWKS(rsaKey))
	forged := attacker.Sign(claims(nil), nil) // same kid, other key
	expired := rsaKey.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(-time.Hour).Unix() }), nil)
	notYet := rsaKey.Sign(claims(func(c map[string]any) { c["nbf"] = t0.Add(time.Hour).Unix() }), nil)
	for i := 0; i < 3; i++ {
		if _, err := p.Authenticate(context.Background(), forged); code(err) != CodeBadSignature {
			t.Fatalf("forged: %v", err)
		}
		if _, err := p.Authenticate(context.Background(), expired); code(err) != CodeExpired {
			t.Fatalf("expired: %v", err)
		}
		if _, err := p.Authenticate(context.Background(), notYet); code(err) != CodeNotYetValid {
			t.Fatalf("not yet valid: %v", err)
		}
	}
	if got := testutil.ToFloat64(m.cacheRefHit); got != 4 {
		t.Fatalf("refusal hits = %v, want 4 (forged and expired twice each; nbf refusals are not cached)", got)
	}
	// The nbf token becomes valid later: it was never cached as refused.
	clk.Add(2 * time.Hour)
	p2 := staticProvider(t, clk, cache, authntest.JWKS(rsaKey))
	if _, err := p2.Authenticate(context.Background(), rsaKey.Sign(claims(func(c map[string]any) {
		c["nbf"] = t0.Add(time.Hour).Unix()
		c["exp"] = t0.Add(3 * time.Hour).Unix()
	}), nil)); err != nil {
		t.Fatalf("token after its nbf: %v", err)
	}
	// A new key set (the forger's key published) drops the cached refusal.
	p3 := staticProvider(t, clk, cache, authntest.JWKS(attacker))
	forged2 := attacker.Sign(claims(func(c map[string]any) { c["exp"] = t0.Add(5 * time.Hour).Unix() }), nil)
	if _, err := p.Authenticate(context.Background(), forged2); code(err) != CodeBadSignature {
		t.Fatalf("forged2 under the old set: %v", err)
	}
	if _, err := p3.Authenticate(context.Background(), forged2); err != nil {
		t.Fatalf("refusal survived a key set change: %v", err)
	}
}
