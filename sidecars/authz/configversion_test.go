package authzsidecar

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// TestCheckCopiesConfigVersion: the gatehouse.revision context extension
// the control plane sets on the ext_authz filter comes back as the
// config_version dynamic metadata (allow and deny), so the ALS entry names
// the version that served the request; a junk revision is not copied.
func TestCheckCopiesConfigVersion(t *testing.T) {
	c := startCheckServer(t, newEngine(t, compileSpec(t, "petstore")))
	for _, tc := range []struct {
		name, rev, want string
		headers         map[string]string
	}{
		{name: "allow", rev: "v-3f2a", want: "v-3f2a", headers: map[string]string{"x-api-key": "acme-key"}},
		{name: "deny", rev: "v-3f2a", want: "v-3f2a"},
		{name: "no revision"},
		{name: "junk revision", rev: "v 1\n"},
		{name: "overlong revision", rev: strings.Repeat("a", 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := checkRequest("petstore/read", tc.headers, "")
			delete(req.Attributes.ContextExtensions, contract.ContextRevision)
			if tc.rev != "" {
				req.Attributes.ContextExtensions[contract.ContextRevision] = tc.rev
			}
			resp, err := c.Check(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			f := resp.GetDynamicMetadata().GetFields()
			got, ok := f[contract.ConfigVersionKey]
			if tc.want == "" {
				if ok {
					t.Fatalf("config_version = %v, want none", got)
				}
				return
			}
			if got.GetStringValue() != tc.want {
				t.Fatalf("config_version = %q, want %q (metadata %v)", got.GetStringValue(), tc.want, f)
			}
		})
	}
}
