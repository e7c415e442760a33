package compile

import (
	"sync"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Checker compiles one spec on its own with the control plane's compiler,
// so the broker's worker refuses what the control plane would leave out
// before anything is stored (same code, same errors).
type Checker struct {
	mu sync.Mutex
	c  *Compiler
}

// NewChecker builds a checker; give it the control plane's options (the
// `gatehouse worker` role shares the control plane's compile flags), or
// it refuses what the control plane would publish (e.g. every TLS spec
// without the certificate directory).
func NewChecker(o Options) (*Checker, error) {
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	return &Checker{c: c}, nil
}

// Check compiles and validates d alone, its hosts claimed by tenant (""
// means its metadata.team); nil means the control plane would publish it
// (cross-spec checks such as host conflicts are the store's and the
// control plane's, which see every spec).
func (k *Checker) Check(d *spec.Document, tenant string) error {
	body, err := d.EdgeRoute.CanonicalJSON()
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	res := k.c.Compile(source.Revision{ID: "check", Specs: []source.Spec{{Name: d.Name(), Origin: d.File, Data: body, Tenant: tenant}}})
	if failed := res.Failed(); len(failed) > 0 {
		return failed[0].Err // one spec: at most one failure
	}
	return nil
}
