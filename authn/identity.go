package authn

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Provider kinds, as ROUTE_SPEC.md names them (identity.kind in CEL).
const (
	KindJWT    = "jwt"
	KindAPIKey = "apiKey"
	KindMTLS   = "mtls"
)

// Identity is an authenticated caller. It is immutable once returned: the
// token cache hands the same *Identity to concurrent requests.
type Identity struct {
	Provider  string            // provider name within its spec
	Kind      string            // KindJWT, KindAPIKey or KindMTLS
	Subject   string            // JWT sub, API key id, or mTLS principal
	APIKeyID  string            // set for API keys
	Scopes    []string          // from the scope (space-separated) or scp claim
	Labels    map[string]string // API key labels
	ExpiresAt time.Time         // JWT exp; zero for other kinds

	jwt *jwtClaims // the claims of a JWT; nil for other kinds
}

// jwtClaims are a verified JWT's claims: the payload JSON and the index of
// its members, decoded when read (a token's claims are mostly never read
// beyond the registered ones authn checks). A member once decoded is kept
// (vals, one slot per member), so a cached token's claims are decoded once.
type jwtClaims struct {
	jsonObject
	vals []atomic.Pointer[any]
	once sync.Once
	all  map[string]any
}

func newJWTClaims(doc []byte, index []member) *jwtClaims {
	members := slices.Clone(index) // index may be on the caller's stack
	return &jwtClaims{jsonObject: jsonObject{doc: doc, members: members}, vals: make([]atomic.Pointer[any], len(members))}
}

// Claims are the JWT's claims as encoding/json decodes the payload (nil
// for other kinds). The map is built on the first call and shared by
// every caller: it must not be modified.
func (id *Identity) Claims() map[string]any {
	if id == nil || id.jwt == nil {
		return nil
	}
	c := id.jwt
	c.once.Do(func() {
		_ = json.Unmarshal(c.doc, &c.all) // validated when the token was verified
	})
	return c.all
}

// Claim is the JWT claim name as Claims()[name] would give it, decoding
// only that claim; ok is false when the token has none (or id is not a
// JWT identity). A claim that is an object or array must not be modified.
func (id *Identity) Claim(name string) (any, bool) {
	if id == nil || id.jwt == nil {
		return nil, false
	}
	c := id.jwt
	i := c.index(name)
	if i < 0 {
		return nil, false
	}
	if p := c.vals[i].Load(); p != nil {
		return *p, true
	}
	m := &c.members[i]
	v := new(any)
	*v = decodeValue(c.doc[m.valStart:m.valEnd])
	c.vals[i].Store(v)
	return *v, true
}

// LogValue prints who, never claims or labels (they may carry personal data).
func (id *Identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("anonymous")
	}
	return slog.GroupValue(
		slog.String("provider", id.Provider),
		slog.String("kind", id.Kind),
		slog.String("subject", id.Subject),
	)
}

// Error codes: a bounded set, safe to use as a metric label.
const (
	CodeNoCredentials      = "no_credentials"
	CodeTokenTooLarge      = "token_too_large"
	CodeMalformedToken     = "malformed_token"
	CodeUnsupportedToken   = "unsupported_token"
	CodeAlgorithmRefused   = "algorithm_not_allowed"
	CodeUnknownKey         = "unknown_key"
	CodeKeyRefused         = "key_refused"
	CodeKeysUnavailable    = "keys_unavailable"
	CodeBadSignature       = "bad_signature"
	CodeMissingExp         = "missing_exp"
	CodeExpired            = "token_expired"
	CodeNotYetValid        = "token_not_yet_valid"
	CodeIssuedInFuture     = "token_issued_in_future"
	CodeIssuerMismatch     = "issuer_not_accepted"
	CodeAudienceMismatch   = "audience_not_accepted"
	CodeInvalidClaims      = "invalid_claims"
	CodeUnknownAPIKey      = "unknown_api_key"
	CodePrincipalForbidden = "principal_not_allowed"
)

// Error is why credentials were refused. Code is one of the Code*
// constants; Detail explains it without quoting the credential.
type Error struct {
	Provider string
	Code     string
	Detail   string
}

func (e *Error) Error() string {
	return "provider " + e.Provider + ": " + e.Code + ": " + e.Detail
}

func refuse(provider, code, detail string) *Error {
	return &Error{Provider: provider, Code: code, Detail: detail}
}
