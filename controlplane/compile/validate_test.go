package compile

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// validateAllKnown checks a packed Any through the message given for it
// (so its problems are found without decoding), and decodes an Any whose
// given message is of another type.
func TestValidateAllKnown(t *testing.T) {
	good, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	tec := &corev3.TypedExtensionConfig{Name: "x", TypedConfig: good}
	if err := validateAllKnown(tec, nil); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	// The message given for the Any is what is validated: an
	// ExtAuthzPerRoute with no override violates its required oneof.
	invalid := &extauthzv3.ExtAuthzPerRoute{}
	err = validateAllKnown(tec, map[*anypb.Any]proto.Message{good: invalid})
	if err == nil || !strings.Contains(err.Error(), "typed_config(envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute)") {
		t.Fatalf("validateAllKnown with an invalid packed message = %v", err)
	}
	// A message of another type than the Any's is ignored: the bytes are
	// decoded and checked.
	if err := validateAllKnown(tec, map[*anypb.Any]proto.Message{good: &extauthzv3.ExtAuthz{}}); err != nil {
		t.Fatalf("mismatched packed message: %v", err)
	}
	bad := &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: good.TypeUrl}}
	if err := validateAllKnown(bad, map[*anypb.Any]proto.Message{bad.TypedConfig: &extauthzv3.ExtAuthz{}}); err == nil {
		t.Fatal("an empty ExtAuthzPerRoute passed")
	}
}
