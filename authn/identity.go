package authn

import (
	"log/slog"
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
	Claims    map[string]any    // JWT claims (decoded JSON); nil otherwise
	Scopes    []string          // from the scope (space-separated) or scp claim
	Labels    map[string]string // API key labels
	ExpiresAt time.Time         // JWT exp; zero for other kinds
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
