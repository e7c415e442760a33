// Package route53fake is a Route 53 API double for tests: one hosted zone
// served over HTTP on 127.0.0.1:0, spoken to by the real aws-sdk-go-v2
// route53 client (BaseEndpoint = URL). It implements
// ChangeResourceRecordSets and ListResourceRecordSets with Route 53's
// rules: CREATE of an existing record set and DELETE of a missing one or
// of one whose TTL or values differ fail with InvalidChangeBatch, a CNAME
// cannot share its name with another record, and a change batch is
// atomic (all or nothing). Names come back with a trailing dot and "*" as
// "\052", as Route 53 returns them. There is no Route 53 emulator to run
// here, so this is the closest to the real API a test gets. Test code
// only; it must not import other broker packages.
package route53fake

import (
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// RRSet is one record set of the zone.
type RRSet struct {
	Name   string // lower case, no trailing dot, "*" for wildcards
	Type   string
	TTL    int64
	Values []string
}

// Zone is the fake hosted zone and its HTTP server.
type Zone struct {
	ID  string
	URL string

	mu      sync.Mutex
	sets    map[string]RRSet // key: name + " " + type
	changes int              // accepted change batches
	refused int              // refused change batches
}

// Start serves a zone with id on 127.0.0.1:0 until the test ends.
func Start(t testing.TB, id string) *Zone {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &Zone{ID: id, URL: "http://" + l.Addr().String(), sets: map[string]RRSet{}}
	srv := &http.Server{Handler: z}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return z
}

func norm(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return strings.ReplaceAll(name, `\052`, "*")
}

func keyOf(name, typ string) string { return norm(name) + " " + typ }

// Put adds or replaces a record set directly (records Gatehouse did not
// make: the test's "existing zone").
func (z *Zone) Put(s RRSet) {
	z.mu.Lock()
	defer z.mu.Unlock()
	s.Name = norm(s.Name)
	z.sets[keyOf(s.Name, s.Type)] = s
}

// Get returns a record set.
func (z *Zone) Get(name, typ string) (RRSet, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	s, ok := z.sets[keyOf(name, typ)]
	return s, ok
}

// Sets returns every record set, sorted as Route 53 lists them.
func (z *Zone) Sets() []RRSet {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.sorted()
}

// Batches returns how many change batches were accepted and refused.
func (z *Zone) Batches() (accepted, refused int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.changes, z.refused
}

// order is Route 53's listing order: labels reversed, then type.
func order(name string) string {
	l := strings.Split(name, ".")
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	return strings.Join(l, ".")
}

func (z *Zone) sorted() []RRSet {
	out := make([]RRSet, 0, len(z.sets))
	for _, s := range z.sets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := order(out[i].Name), order(out[j].Name)
		if a != b {
			return a < b
		}
		return out[i].Type < out[j].Type
	})
	return out
}

type xmlRRSet struct {
	Name            string   `xml:"Name"`
	Type            string   `xml:"Type"`
	TTL             int64    `xml:"TTL"`
	ResourceRecords []string `xml:"ResourceRecords>ResourceRecord>Value"`
}

type changeRequest struct {
	XMLName xml.Name `xml:"ChangeResourceRecordSetsRequest"`
	Changes []struct {
		Action string   `xml:"Action"`
		Set    xmlRRSet `xml:"ResourceRecordSet"`
	} `xml:"ChangeBatch>Changes>Change"`
}

const ns = "https://route53.amazonaws.com/doc/2013-04-01/"

func (z *Zone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/xml")
	want := "/2013-04-01/hostedzone/" + z.ID + "/rrset"
	if strings.TrimSuffix(r.URL.Path, "/") != want {
		fail(w, 404, "NoSuchHostedZone", fmt.Sprintf("No hosted zone found with ID: %s", r.URL.Path))
		return
	}
	switch r.Method {
	case http.MethodGet:
		z.list(w, r)
	case http.MethodPost:
		z.change(w, r)
	default:
		fail(w, 405, "InvalidInput", "method not allowed")
	}
}

func fail(w http.ResponseWriter, code int, kind, msg string) {
	w.WriteHeader(code)
	var b strings.Builder
	xml.EscapeText(&b, []byte(msg))
	fmt.Fprintf(w, `<?xml version="1.0"?><ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`, ns, kind, b.String())
}

func (z *Zone) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max := 100
	if n, err := strconv.Atoi(q.Get("maxitems")); err == nil && n > 0 && n < max {
		max = n
	}
	start, startType := norm(q.Get("name")), q.Get("type")
	if startType != "" && start == "" {
		fail(w, 400, "InvalidInput", "type requires name")
		return
	}
	z.mu.Lock()
	all := z.sorted()
	z.mu.Unlock()
	var out []RRSet
	truncated := false
	var next RRSet
	for _, s := range all {
		if start != "" {
			a, b := order(s.Name), order(start)
			if a < b || (a == b && startType != "" && s.Type < startType) {
				continue
			}
		}
		if len(out) == max {
			truncated, next = true, s
			break
		}
		out = append(out, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><ListResourceRecordSetsResponse xmlns="%s"><ResourceRecordSets>`, ns)
	for _, s := range out {
		fmt.Fprintf(&b, "<ResourceRecordSet><Name>%s</Name><Type>%s</Type><TTL>%d</TTL><ResourceRecords>", esc(wire(s.Name)), s.Type, s.TTL)
		for _, v := range s.Values {
			fmt.Fprintf(&b, "<ResourceRecord><Value>%s</Value></ResourceRecord>", esc(v))
		}
		b.WriteString("</ResourceRecords></ResourceRecordSet>")
	}
	fmt.Fprintf(&b, "</ResourceRecordSets><IsTruncated>%t</IsTruncated>", truncated)
	if truncated {
		fmt.Fprintf(&b, "<NextRecordName>%s</NextRecordName><NextRecordType>%s</NextRecordType>", esc(wire(next.Name)), next.Type)
	}
	fmt.Fprintf(&b, "<MaxItems>%d</MaxItems></ListResourceRecordSetsResponse>", max)
	io.WriteString(w, b.String())
}

func wire(name string) string { return strings.ReplaceAll(name, "*", `\052`) + "." }

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (z *Zone) change(w http.ResponseWriter, r *http.Request) {
	var req changeRequest
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Changes) == 0 {
		fail(w, 400, "InvalidInput", fmt.Sprintf("malformed change batch: %v", err))
		return
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	// Apply to a copy; commit only if every change is valid (atomic).
	next := make(map[string]RRSet, len(z.sets))
	for k, v := range z.sets {
		next[k] = v
	}
	var problems []string
	for _, c := range req.Changes {
		s := RRSet{Name: norm(c.Set.Name), Type: c.Set.Type, TTL: c.Set.TTL, Values: c.Set.ResourceRecords}
		k := keyOf(s.Name, s.Type)
		cur, exists := next[k]
		id := fmt.Sprintf("[name='%s.', type='%s']", s.Name, s.Type)
		switch c.Action {
		case "CREATE", "UPSERT":
			if c.Action == "CREATE" && exists {
				problems = append(problems, "Tried to create resource record set "+id+" but it already exists")
				continue
			}
			if p := cnameConflict(next, s); p != "" {
				problems = append(problems, p)
				continue
			}
			if len(s.Values) == 0 {
				problems = append(problems, "ResourceRecords is required for "+id)
				continue
			}
			next[k] = s
		case "DELETE":
			switch {
			case !exists:
				problems = append(problems, "Tried to delete resource record set "+id+" but it was not found")
			case cur.TTL != s.TTL || !sameValues(cur.Values, s.Values):
				problems = append(problems, "Tried to delete resource record set "+id+" but the values provided do not match the current values")
			default:
				delete(next, k)
			}
		default:
			problems = append(problems, fmt.Sprintf("unknown action %q", c.Action))
		}
	}
	if len(problems) > 0 {
		z.refused++
		fail(w, 400, "InvalidChangeBatch", "["+strings.Join(problems, ", ")+"]")
		return
	}
	z.sets = next
	z.changes++
	fmt.Fprintf(w, `<?xml version="1.0"?><ChangeResourceRecordSetsResponse xmlns="%s"><ChangeInfo><Id>/change/C%d</Id><Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>`, ns, z.changes)
}

func cnameConflict(sets map[string]RRSet, s RRSet) string {
	for _, o := range sets {
		if o.Name != s.Name || o.Type == s.Type {
			continue
		}
		if s.Type == "CNAME" {
			return fmt.Sprintf("RRSet of type CNAME with DNS name %s. is not permitted as it conflicts with other records with the same DNS name in zone", s.Name)
		}
		if o.Type == "CNAME" {
			return fmt.Sprintf("RRSet of type %s with DNS name %s. is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone", s.Type, s.Name)
		}
	}
	return ""
}

func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
