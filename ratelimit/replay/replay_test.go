package replay

import (
	"context"
	"os"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func TestParse(t *testing.T) {
	steps, err := Parse(strings.NewReader("# c\n\napi a=1,b={run}@hits=0 c=2 hits=3 => OVER_LIMIT\n"), "r9")
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Line != 3 || steps[0].Want != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("%+v", steps)
	}
	r := steps[0].Request
	if r.Domain != "api" || r.HitsAddend != 3 || len(r.Descriptors) != 2 ||
		r.Descriptors[0].Entries[1].Value != "r9" || r.Descriptors[0].HitsAddend.GetValue() != 0 || r.Descriptors[0].HitsAddend == nil ||
		r.Descriptors[1].HitsAddend != nil {
		t.Fatalf("request %v", r)
	}
	for _, bad := range []string{"api a=1", "api a=1 => MAYBE", "api => OK", "api a => OK", "api a=1 hits=x => OK", "api a=1@hits=-1 => OK"} {
		if _, err := Parse(strings.NewReader(bad), "1"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRunReportsMismatches(t *testing.T) {
	steps, err := Parse(strings.NewReader("d k=v => OK\nd k=v => OVER_LIMIT\n"), "1")
	if err != nil {
		t.Fatal(err)
	}
	alwaysOK := func(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
	}
	mism, err := Run(context.Background(), steps, alwaysOK)
	if err != nil || len(mism) != 1 || !strings.Contains(mism[0], "script line 2: got OK, want OVER_LIMIT") {
		t.Fatalf("%v %v", mism, err)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../testdata/replay/script.txt"); err == nil {
		f.Add(string(b))
	}
	f.Add("api a=1@hits=2 hits=1 => OK")
	f.Add("=>")
	f.Fuzz(func(t *testing.T, script string) {
		steps, err := Parse(strings.NewReader(script), "1")
		if err != nil {
			return
		}
		for _, s := range steps {
			if s.Request == nil || s.Request.Domain == "" || len(s.Request.Descriptors) == 0 {
				t.Fatalf("line %d: incomplete request %v", s.Line, s.Request)
			}
			for _, d := range s.Request.Descriptors {
				for _, e := range d.Entries {
					if e.Key == "" {
						t.Fatalf("line %d: empty key", s.Line)
					}
				}
			}
		}
	})
}
