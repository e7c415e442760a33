package authn

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// The header and claims reader (jsonscan.go) replaced encoding/json into a
// map. These tests hold it to the encoding/json path it replaced, kept
// below verbatim as the reference: same refusal (code and detail) for every
// payload, and on acceptance the same subject, scopes, expiry and claims.

// refClaims is the claims check as it was, on encoding/json.
func (p *JWT) refClaims(payload []byte, now time.Time) (*Identity, map[string]any, error) {
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, nil, p.refuse(CodeMalformedToken, "payload is not a JSON object")
	}
	skew := p.cfg.ClockSkew
	iss, _ := claims["iss"].(string)
	if iss != p.cfg.Issuer {
		return nil, nil, p.refuse(CodeIssuerMismatch, "token issuer is not the provider's issuer")
	}
	if !p.audienceOK(claims["aud"]) {
		return nil, nil, p.refuse(CodeAudienceMismatch, "token audience is not one the provider accepts")
	}
	expRaw, ok := claims["exp"]
	if !ok {
		return nil, nil, p.refuse(CodeMissingExp, "token has no exp claim; tokens must expire")
	}
	exp, ok := refNumericDate(expRaw)
	if !ok {
		return nil, nil, p.refuse(CodeInvalidClaims, "exp is not a NumericDate")
	}
	if !now.Before(exp.Add(skew)) {
		return nil, nil, p.refuse(CodeExpired, "token expired")
	}
	if v, ok := claims["nbf"]; ok {
		nbf, ok := refNumericDate(v)
		if !ok {
			return nil, nil, p.refuse(CodeInvalidClaims, "nbf is not a NumericDate")
		}
		if now.Add(skew).Before(nbf) {
			return nil, nil, p.refuse(CodeNotYetValid, "token is not valid yet (nbf in the future)")
		}
	}
	if v, ok := claims["iat"]; ok {
		iat, ok := refNumericDate(v)
		if !ok {
			return nil, nil, p.refuse(CodeInvalidClaims, "iat is not a NumericDate")
		}
		if now.Add(skew).Before(iat) {
			return nil, nil, p.refuse(CodeIssuedInFuture, "token was issued in the future (iat)")
		}
	}
	id := &Identity{Provider: p.cfg.Name, Kind: KindJWT, ExpiresAt: exp}
	if v, ok := claims["sub"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, nil, p.refuse(CodeInvalidClaims, "sub is not a string")
		}
		id.Subject = s
	}
	id.Scopes = refScopes(claims)
	return id, claims, nil
}

func refNumericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok {
		return time.Time{}, false
	}
	return numericDate(f)
}

func refScopes(claims map[string]any) []string {
	if s, ok := claims["scope"].(string); ok {
		return strings.Fields(s)
	}
	switch v := claims["scp"].(type) {
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

// refParseHeader is the header reader as it was, on encoding/json.
func refParseHeader(b []byte) (alg, kid string, crit int, err error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return "", "", 0, errors.New("header is not a JSON object")
	}
	var c []string
	for _, f := range []struct {
		name string
		dst  any
	}{{"alg", &alg}, {"kid", &kid}, {"crit", &c}} {
		if v, ok := raw[f.name]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return "", "", 0, fmt.Errorf("header %s has the wrong type", f.name)
			}
		}
	}
	return alg, kid, len(c), nil
}

// claimPayloads are payloads around every rule of the claims check and
// every corner of JSON the reader handles itself.
func claimPayloads() []string {
	exp := fmt.Sprint(t0.Add(time.Hour).Unix())
	past := fmt.Sprint(t0.Add(-time.Hour).Unix())
	future := fmt.Sprint(t0.Add(time.Hour).Unix())
	ok := `"iss":"` + testIssuer + `","aud":"` + testAud + `","exp":` + exp
	return []string{
		`{` + ok + `}`,
		`{` + ok + `,"sub":"alice","scope":"a b  c","tenant":"t-1","email":"a@b.example"}`,
		` { ` + strings.ReplaceAll(ok, ",", " ,\n\t") + ` } `,
		`{` + ok + `,"aud":["other","` + testAud + `"]}`,
		`{` + ok + `,"aud":["other",1,null,true,{"a":1},["` + testAud + `"]]}`,
		`{` + ok + `,"aud":["other","` + testAud + `"],"aud":"other"}`, // the last one counts
		`{` + ok + `,"aud":"other","aud":"` + testAud + `"}`,
		`{` + ok + `,"aud":[]}`,
		`{` + ok + `,"aud":null}`,
		`{` + ok + `,"aud":"\u0070etstore"}`,
		`{` + ok + `,"aud":["\u0070etstore"]}`,
		`{"iss":"` + testIssuer + `","iss":"https://evil/","aud":"` + testAud + `","exp":` + exp + `}`,
		`{"iss":"https://evil/","iss":"` + testIssuer + `","aud":"` + testAud + `","exp":` + exp + `}`,
		`{"\u0069ss":"` + testIssuer + `","aud":"` + testAud + `","exp":` + exp + `}`,
		`{"iss":"https:\/\/idp.test\/","aud":"` + testAud + `","exp":` + exp + `}`,
		`{"iss":null,"aud":"` + testAud + `","exp":` + exp + `}`,
		`{"iss":1,"aud":"` + testAud + `","exp":` + exp + `}`,
		`{"ISS":"` + testIssuer + `","aud":"` + testAud + `","exp":` + exp + `}`,
		`{"iss":"` + testIssuer + `","aud":"` + testAud + `"}`,
		`{` + ok + `,"exp":null}`,
		`{` + ok + `,"exp":"` + exp + `"}`,
		`{` + ok + `,"exp":` + exp + `.5}`,
		`{` + ok + `,"exp":` + exp + `e0}`,
		`{` + ok + `,"exp":-1}`,
		`{` + ok + `,"exp":1e12}`,
		`{` + ok + `,"exp":` + past + `}`,
		`{` + ok + `,"nbf":` + future + `}`,
		`{` + ok + `,"nbf":` + past + `,"iat":` + past + `}`,
		`{` + ok + `,"nbf":"x"}`,
		`{` + ok + `,"iat":` + future + `}`,
		`{` + ok + `,"iat":true}`,
		`{` + ok + `,"sub":null}`,
		`{` + ok + `,"sub":42}`,
		`{` + ok + `,"sub":""}`,
		`{` + ok + `,"sub":"al\"ice\u00e9\ud83d\ude00"}`,
		`{` + ok + `,"sub":"\ud800 lone surrogate"}`,
		"{" + ok + ",\"sub\":\"bad utf-8 \xff\xfe\"}",
		"{" + ok + ",\"t\xffname\":\"x\"}",
		`{` + ok + `,"scope":5,"scp":"x y"}`,
		`{` + ok + `,"scp":["x",1,"y",null]}`,
		`{` + ok + `,"scp":"x  y"}`,
		`{` + ok + `,"scp":{"x":1}}`,
		`{` + ok + `,"groups":["admins","ops"],"tenant":7,"n":-0.5e-3,"flag":false,"obj":{"a":[1,{"b":null}]},"empty":{},"arr":[]}`,
		`{` + ok + `,"tiny":1e-400}`,
		`{` + ok + `,"huge":1e400}`,
		`{` + ok + `,"nested":{"huge":-1e309}}`,
		`{` + ok + `,"deep":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
		`{` + ok + `}x`,
		`{` + ok + `,}`,
		`{` + ok + `,"a":01}`,
		`{` + ok + `,"a":1.}`,
		`{` + ok + `,"a":.5}`,
		`{` + ok + `,"a":+1}`,
		`{` + ok + `,"a":tru}`,
		`{` + ok + `,"a":"\x01"}`,
		`{` + ok + `,"a":"\q"}`,
		`{` + ok + `,"a":"\u12G4"}`,
		`{` + ok + `,"a" 1}`,
		`{` + ok + `,"a":[1,]}`,
		`{` + ok + `,"a":[1 2]}`,
		`{` + ok,
		`{` + ok + `,"a":"unterminated}`,
		`null`, `[]`, `"x"`, `1`, ``, ` `, `{}`, `{"a"}`, `{,}`,
	}
}

func checkClaimsLikeReference(t *testing.T, p *JWT, payload []byte) {
	t.Helper()
	now := t0
	want, wantClaims, wantErr := p.refClaims(payload, now)
	got, gotErr := p.claims(payload, now)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("payload %.200q: refusal %v, encoding/json path: %v", payload, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	if got.Subject != want.Subject || !slices.Equal(got.Scopes, want.Scopes) || (got.Scopes == nil) != (want.Scopes == nil) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || got.Provider != want.Provider || got.Kind != want.Kind {
		t.Fatalf("payload %.200q: identity %+v, encoding/json path: %+v", payload, got, want)
	}
	for name, v := range wantClaims {
		if c, ok := got.Claim(name); !ok || !reflect.DeepEqual(c, v) {
			t.Fatalf("payload %.200q: Claim(%q) = %#v, %v; encoding/json: %#v", payload, name, c, ok, v)
		}
		if c, ok := got.Claim(name); !ok || !reflect.DeepEqual(c, v) { // decoded once, then kept
			t.Fatalf("payload %.200q: second Claim(%q) = %#v, %v; encoding/json: %#v", payload, name, c, ok, v)
		}
	}
	for _, name := range []string{"absent", "ISS", ""} {
		if _, in := wantClaims[name]; in {
			continue
		}
		if c, ok := got.Claim(name); ok {
			t.Fatalf("payload %.200q: Claim(%q) = %#v for a claim the token lacks", payload, name, c)
		}
	}
	if !reflect.DeepEqual(got.Claims(), wantClaims) {
		t.Fatalf("payload %.200q: Claims() = %#v; encoding/json: %#v", payload, got.Claims(), wantClaims)
	}
}

func checkHeaderLikeReference(t *testing.T, b []byte) {
	t.Helper()
	alg, kid, crit, wantErr := refParseHeader(b)
	h, err := parseHeader(b)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("header %.200q: error %v, encoding/json path: %v", b, err, wantErr)
	case wantErr == nil:
		if h.Alg != alg || h.Kid != kid || h.Crit != crit {
			t.Fatalf("header %.200q: alg %q kid %q crit %d; encoding/json path: alg %q kid %q crit %d", b, h.Alg, h.Kid, h.Crit, alg, kid, crit)
		}
	case strings.HasSuffix(wantErr.Error(), " has the wrong type"):
		// With several fields of the wrong type the reference named a
		// random one (Go map order): the kind of error must match.
		if !strings.HasSuffix(err.Error(), " has the wrong type") {
			t.Fatalf("header %.200q: error %v, encoding/json path: %v", b, err, wantErr)
		}
	case err.Error() != wantErr.Error():
		t.Fatalf("header %.200q: error %v, encoding/json path: %v", b, err, wantErr)
	}
}

func headerSeeds() []string {
	return []string{
		`{"alg":"RS256","kid":"k1","typ":"JWT"}`,
		`{"alg":"RS256","alg":"none"}`,
		`{"alg":"none","alg":"RS256"}`,
		`{"ALG":"RS256","kid":"k1"}`,
		`{"\u0061lg":"RS256"}`,
		`{"alg":"RS\u0032\u00356"}`,
		`{"alg":null,"kid":null,"crit":null}`,
		`{"alg":1}`, `{"kid":{}}`, `{"alg":["RS256"]}`,
		`{"alg":"RS256","crit":["b64"],"b64":false}`,
		`{"alg":"RS256","crit":[]}`,
		`{"alg":"RS256","crit":[null]}`,
		`{"alg":"RS256","crit":["a",null,"b"]}`,
		`{"alg":"RS256","crit":[1]}`,
		`{"alg":"RS256","crit":"b64"}`,
		`{"alg":"RS256","crit":[["b64"]]}`,
		`{"alg":"RS256","n":1e400}`, // a number out of range is not an error in a header
		`{"alg":"RS256","x":[1,2,{"a":[]}]}`,
		"{\"alg\":\"RS\xff256\"}",
		`{"alg":"RS256"} `, `{"alg":"RS256"}x`, `{"alg":"RS256",}`, `{"alg" "RS256"}`,
		`null`, `[]`, `"alg"`, ``, `{`, `{}`,
		`{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
		`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	}
}

func TestClaimsMatchEncodingJSON(t *testing.T) {
	keys()
	p := staticProvider(t, newClock(t0), nil, authntest.JWKS(rsaKey))
	for _, s := range claimPayloads() {
		checkClaimsLikeReference(t, p, []byte(s))
	}
}

func TestParseHeaderMatchesEncodingJSON(t *testing.T) {
	for _, s := range headerSeeds() {
		checkHeaderLikeReference(t, []byte(s))
	}
}

// FuzzClaims: on any payload the claims check refuses exactly as the
// encoding/json path did, and accepts with the same identity and claims.
func FuzzClaims(f *testing.F) {
	keys()
	p := staticProvider(f, newClock(t0), nil, authntest.JWKS(rsaKey))
	for _, s := range claimPayloads() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkClaimsLikeReference(t, p, payload)
	})
}

// FuzzParseHeader: on any header the reader agrees with the encoding/json
// path it replaced.
func FuzzParseHeader(f *testing.F) {
	for _, s := range headerSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHeaderLikeReference(t, b)
	})
}

// The token cache hands one *Identity to concurrent requests: reading its
// claims (each decoded on first use) must be safe from many goroutines
// (run with -race) and give every reader the same values.
func TestClaimsConcurrentReaders(t *testing.T) {
	keys()
	p := staticProvider(t, newClock(t0), NewTokenCache(16, time.Hour, nil), authntest.JWKS(rsaKey))
	tok := rsaKey.Sign(claims(func(c map[string]any) {
		c["tenant"] = "t-1"
		c["groups"] = []string{"admins", "ops"}
		c["org"] = map[string]any{"id": 7}
	}), nil)
	id, err := p.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if v, ok := id.Claim("tenant"); !ok || v != "t-1" {
					t.Errorf("goroutine %d: tenant = %v, %v", g, v, ok)
					return
				}
				if v, ok := id.Claim("groups"); !ok || !reflect.DeepEqual(v, []any{"admins", "ops"}) {
					t.Errorf("goroutine %d: groups = %v, %v", g, v, ok)
					return
				}
				if g%2 == 0 && id.Claims()["sub"] != "alice" {
					t.Errorf("goroutine %d: Claims()[sub] = %v", g, id.Claims()["sub"])
					return
				}
			}
		}()
	}
	wg.Wait()
	again, err := p.Authenticate(t.Context(), tok)
	if err != nil || again != id {
		t.Fatalf("second Authenticate: %p, %v; want the cached %p", again, err, id)
	}
}

// RS* and PS* signatures are checked by crypto/rsa directly, no longer by
// jwx's verifier: every RSA algorithm accepts its own signatures (2048-
// and 4096-bit keys, the largest signature that fits the stack buffer),
// refuses a tampered one, a signature of another RSA algorithm and one by
// another key, and agrees with jwx's verifier on each.
func TestRSASignaturesAgreeWithJWX(t *testing.T) {
	keys()
	big := authntest.NewRSA("k4096", 4096)
	algs := []jwa.SignatureAlgorithm{jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512}
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = a.String()
	}
	for _, key := range []*authntest.Key{rsaKey, big} {
		ks, err := NewStaticKeys(authntest.JWKS(key))
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewJWT(JWTConfig{Name: "corp", Issuer: testIssuer, Audiences: []string{testAud}, Algorithms: names}, ks, nil, newClock(t0).Now)
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range algs {
			k := *key
			k.Alg = alg
			tok := k.Sign(claims(nil), nil)
			other := *key
			other.Alg = algs[(slices.Index(algs, alg)+3)%len(algs)] // PKCS #1 v1.5 <-> PSS
			otherSig := other.Sign(claims(nil), nil)
			attackerKey := *attacker
			attackerKey.Alg = alg
			input := tok[:strings.LastIndexByte(tok, '.')]
			for _, c := range []struct {
				name string
				tok  string
				ok   bool
			}{
				{name: "own signature", tok: tok, ok: true},
				{name: "tampered signature", tok: input + "." + flipSig(t, tok)},
				{name: "signature of " + other.Alg.String(), tok: input + "." + otherSig[strings.LastIndexByte(otherSig, '.')+1:]},
				{name: "signature by another key", tok: input + "." + func() string { s := attackerKey.Sign(claims(nil), nil); return s[strings.LastIndexByte(s, '.')+1:] }()},
			} {
				_, err := p.Authenticate(t.Context(), c.tok)
				if c.ok && err != nil || !c.ok && code(err) != CodeBadSignature {
					t.Errorf("%d-bit %s, %s: %v", len(key.Public().(*rsa.PublicKey).N.Bytes())*8, alg, c.name, err)
				}
				// The same verdict as jwx's verifier on the same bytes.
				i := strings.LastIndexByte(c.tok, '.')
				sig, err := base64.RawURLEncoding.DecodeString(c.tok[i+1:])
				if err != nil {
					t.Fatal(err)
				}
				v, err := jws.NewVerifier(alg)
				if err != nil {
					t.Fatal(err)
				}
				jwxErr := v.Verify([]byte(c.tok[:i]), sig, key.Public())
				ourErr := p.verifySignature(alg.String(), c.tok[:i], sig, key.Public())
				if (jwxErr == nil) != (ourErr == nil) || (ourErr == nil) != c.ok {
					t.Errorf("%s, %s: crypto/rsa path %v, jwx %v", alg, c.name, ourErr, jwxErr)
				}
			}
		}
	}
}

// flipSig is tok's signature (base64url) with one bit of its first byte
// flipped.
func flipSig(t *testing.T, tok string) string {
	t.Helper()
	sig, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	return base64.RawURLEncoding.EncodeToString(sig)
}

// decodeBase64URL decodes into the buffer when the result fits, else into
// a new slice, and refuses what base64.RawURLEncoding refuses.
func TestDecodeBase64URL(t *testing.T) {
	var buf [8]byte
	for _, s := range []string{"", "YQ", "YWJj", "YWJjZGVmZ2g", "YWJjZGVmZ2hp", "YW=", "YW+", "Y", "!!", "YWJjZGVmZ2hpams"} {
		want, wantErr := base64.RawURLEncoding.DecodeString(s)
		got, err := decodeBase64URL(s, buf[:])
		if (err == nil) != (wantErr == nil) || (err == nil && !bytes.Equal(got, want)) {
			t.Errorf("decodeBase64URL(%q) = %q, %v; want %q, %v", s, got, err, want, wantErr)
		}
	}
}

// parseNumber gives what strconv.ParseFloat (encoding/json's conversion)
// gives, sign of zero included, on its integer fast path and off it.
func TestParseNumber(t *testing.T) {
	for _, n := range []string{"0", "-0", "7", "-7", "1795611600", "-1795611600", "999999999999999", "-999999999999999",
		"1000000000000000", "9007199254740993", "12345678901234567890", "0.5", "-0.0", "1e3", "1E-3", "-2.5e+10", "1e308", "1e309", "-1e400", "1e-400"} {
		want, wantErr := strconv.ParseFloat(n, 64)
		got, ok := parseNumber([]byte(n))
		if ok != (wantErr == nil) || (ok && (got != want || math.Signbit(got) != math.Signbit(want))) {
			t.Errorf("parseNumber(%s) = %v, %v; strconv: %v, %v", n, got, ok, want, wantErr)
		}
	}
}
