package authzsidecar

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// maxConfigVersion bounds the copied version: it names a hash, never more.
const maxConfigVersion = 128

// Decider is what the server needs of the engine.
type Decider interface {
	Decide(ctx context.Context, req authz.Request) authz.Decision
}

// Server is the ext_authz v3 Authorization service.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	d Decider
}

// NewServer serves decisions of d.
func NewServer(d Decider) *Server { return &Server{d: d} }

// Check answers one ext_authz request. A denial is a CheckResponse, never
// a gRPC error. RegisterServer's handler calls it only when the server has
// an interceptor; otherwise it decodes and answers on the wire (wire.go).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	d := s.d.Decide(ctx, RequestFrom(req))
	return fullResponse(&d, requestVersion(req)), nil
}

// requestVersion is the config version the request names, as
// configVersion keeps it.
func requestVersion(req *authv3.CheckRequest) string {
	return configVersion(req.GetAttributes().GetContextExtensions()[contract.ContextRevision])
}

// fullResponse is Response(d) with the config version in its metadata
// (when not empty): the answer to Check.
func fullResponse(d *authz.Decision, version string) *authv3.CheckResponse {
	resp := Response(d)
	if version != "" {
		resp.DynamicMetadata.Fields[contract.ConfigVersionKey] = structpb.NewStringValue(version)
	}
	return resp
}

// configVersion is the revision as logged: empty unless it is short and
// printable ASCII (it is a version string, never free text).
func configVersion(v string) string {
	if len(v) > maxConfigVersion {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= 0x20 || v[i] >= 0x7f {
			return ""
		}
	}
	return v
}

// RequestFrom maps an Envoy CheckRequest to an authz.Request.
func RequestFrom(req *authv3.CheckRequest) authz.Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	path, query, _ := strings.Cut(h.GetPath(), "?")
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		// encode_raw_headers: values arrive as raw bytes.
		hm := h.GetHeaderMap().GetHeaders()
		headers = make(map[string]string, len(hm))
		for _, hv := range hm {
			v := hv.GetValue()
			if v == "" {
				v = string(hv.GetRawValue())
			}
			headers[strings.ToLower(hv.GetKey())] = v
		}
	}
	id := h.GetId()
	if rid := headers["x-request-id"]; rid != "" {
		id = rid
	}
	return authz.Request{
		RouteID:   attrs.GetContextExtensions()[contract.ContextRoute],
		Method:    h.GetMethod(),
		Path:      path,
		Query:     query,
		Host:      h.GetHost(),
		Headers:   headers,
		SourceIP:  attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		Principal: attrs.GetSource().GetPrincipal(),
		RequestID: id,
	}
}

// Response maps a Decision to a CheckResponse.
func Response(d *authz.Decision) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{DynamicMetadata: metadata(&d.Metadata)}
	if d.Allow {
		ok := &authv3.OkHttpResponse{HeadersToRemove: d.HeadersToRemove, QueryParametersToRemove: d.QueryToRemove}
		for _, h := range d.HeadersToSet {
			ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		resp.Status = &statuspb.Status{Code: int32(code.Code_OK)}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: ok}
		return resp
	}
	grpcCode, httpCode := denyCodes(d)
	headers := []*corev3.HeaderValueOption{
		header(contract.ReasonHeader, headerSafe(d.ReasonCode+": "+d.Reason)),
		header("content-type", "application/json"),
	}
	if d.WWWAuthenticate != "" {
		headers = append(headers, header("www-authenticate", d.WWWAuthenticate))
	}
	resp.Status = &statuspb.Status{Code: int32(grpcCode), Message: d.ReasonCode}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: httpCode},
		Headers: headers,
		Body:    d.Body,
	}}
	return resp
}

// denyCodes are the gRPC and HTTP status codes of a denial.
func denyCodes(d *authz.Decision) (code.Code, typev3.StatusCode) {
	if d.Status == 401 {
		return code.Code_UNAUTHENTICATED, typev3.StatusCode_Unauthorized
	}
	return code.Code_PERMISSION_DENIED, typev3.StatusCode_Forbidden
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// metadata is the dynamic metadata of the wire contract.
func metadata(m *authz.Metadata) *structpb.Struct {
	f := map[string]*structpb.Value{
		"subject":  structpb.NewStringValue(m.Subject),
		"provider": structpb.NewStringValue(m.Provider),
		"kind":     structpb.NewStringValue(m.Kind),
		"rule":     structpb.NewStringValue(m.Rule),
		"decision": structpb.NewStringValue(m.Decision),
	}
	if m.APIKeyID != "" {
		f["apikey_id"] = structpb.NewStringValue(m.APIKeyID)
	}
	if len(m.Claims) > 0 {
		c := make(map[string]*structpb.Value, len(m.Claims))
		for k, v := range m.Claims {
			c[k] = structpb.NewStringValue(v)
		}
		f["claims"] = structpb.NewStructValue(&structpb.Struct{Fields: c})
	}
	return &structpb.Struct{Fields: f}
}

// headerSafe keeps a header value to printable ASCII.
func headerSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}
