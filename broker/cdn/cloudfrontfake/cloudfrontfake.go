// Package cloudfrontfake is a CloudFront API double for tests, served over
// HTTP on 127.0.0.1:0 and spoken to by the real aws-sdk-go-v2 cloudfront
// client (BaseEndpoint = URL). It keeps distributions with CloudFront's
// rules: every change gets a new ETag and UpdateDistribution and
// DeleteDistribution need the current one in If-Match
// (InvalidIfMatchVersion without it, PreconditionFailed when stale); a
// change leaves the distribution "InProgress" until it has been read
// DeployReads times, then "Deployed"; only a disabled, deployed
// distribution can be deleted (DistributionNotDisabled otherwise); an
// alias belongs to one distribution (CNAMEAlreadyExists); a caller
// reference is used once (DistributionAlreadyExists). Test code only; it
// must not import other broker packages.
package cloudfrontfake

import (
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Distribution is one distribution as the fake holds it.
type Distribution struct {
	ID, ETag, Status, DomainName string
	CallerReference, Comment     string
	Enabled                      bool
	Aliases                      []string
	Origin                       string
	raw                          string // the DistributionConfig element as sent
	reads                        int
}

// Server is the fake CloudFront API.
type Server struct {
	URL string
	// DeployReads is how many GetDistribution calls a change stays
	// InProgress for (default 2).
	DeployReads int

	mu    sync.Mutex
	dists map[string]*Distribution
	seq   int
	ops   []string
}

// Start serves a fake CloudFront on 127.0.0.1:0 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "http://" + l.Addr().String(), DeployReads: 2, dists: map[string]*Distribution{}}
	srv := &http.Server{Handler: s}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Distributions returns copies of every distribution, by id.
func (s *Server) Distributions() []Distribution {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Distribution, 0, len(s.dists))
	for _, d := range s.dists {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Put adds a distribution somebody else made (enabled, deployed).
func (s *Server) Put(callerRef string, aliases ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.newDist()
	d.CallerReference, d.Comment, d.Enabled, d.Aliases, d.Status, d.Origin = callerRef, "", true, aliases, "Deployed", "other.example.net"
	d.raw = fmt.Sprintf("<DistributionConfig><CallerReference>%s</CallerReference><Comment></Comment><Enabled>true</Enabled></DistributionConfig>", esc(callerRef))
	return d.ID
}

// Ops returns the operations served, in order ("POST create", "PUT
// update E2 disable", "DELETE E3", refusals with their code).
func (s *Server) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ops...)
}

func (s *Server) newDist() *Distribution {
	s.seq++
	d := &Distribution{ID: fmt.Sprintf("EFAKE%04d", s.seq), Status: "InProgress"}
	d.DomainName = strings.ToLower("d"+d.ID) + ".cloudfront.net"
	s.bump(d)
	s.dists[d.ID] = d
	return d
}

func (s *Server) bump(d *Distribution) {
	s.seq++
	d.ETag = fmt.Sprintf("E%d", s.seq)
	d.Status, d.reads = "InProgress", 0
}

type config struct {
	CallerReference string   `xml:"CallerReference"`
	Comment         string   `xml:"Comment"`
	Enabled         bool     `xml:"Enabled"`
	Aliases         []string `xml:"Aliases>Items>CNAME"`
	Origins         []string `xml:"Origins>Items>Origin>DomainName"`
}

const ns = "http://cloudfront.amazonaws.com/doc/2020-05-31/"

var (
	listPath   = regexp.MustCompile(`^/2020-05-31/distribution/?$`)
	distPath   = regexp.MustCompile(`^/2020-05-31/distribution/([A-Z0-9]+)$`)
	configPath = regexp.MustCompile(`^/2020-05-31/distribution/([A-Z0-9]+)/config$`)
)

func fail(w http.ResponseWriter, code int, kind, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0"?><ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`, ns, kind, esc(msg))
}

func esc(v string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(v))
	return b.String()
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	switch {
	case listPath.MatchString(p) && r.Method == http.MethodGet:
		s.list(w)
	case listPath.MatchString(p) && r.Method == http.MethodPost:
		s.create(w, r)
	case distPath.MatchString(p) && r.Method == http.MethodGet:
		s.get(w, distPath.FindStringSubmatch(p)[1])
	case distPath.MatchString(p) && r.Method == http.MethodDelete:
		s.delete(w, r, distPath.FindStringSubmatch(p)[1])
	case configPath.MatchString(p) && r.Method == http.MethodPut:
		s.update(w, r, configPath.FindStringSubmatch(p)[1])
	default:
		fail(w, 404, "NotFound", r.Method+" "+p+" is not part of this double")
	}
}

func readConfig(r *http.Request) (config, string, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return config{}, "", err
	}
	raw := strings.TrimSpace(string(b))
	if strings.HasPrefix(raw, "<?xml") {
		raw = strings.TrimSpace(raw[strings.Index(raw, "?>")+2:])
	}
	var c config
	if err := xml.Unmarshal([]byte(raw), &c); err != nil {
		return c, "", err
	}
	return c, raw, nil
}

// aliasOwner returns the id of another distribution holding one of aliases.
func (s *Server) aliasOwner(aliases []string, self string) (string, string) {
	for _, d := range s.dists {
		if d.ID == self {
			continue
		}
		for _, a := range d.Aliases {
			for _, b := range aliases {
				if strings.EqualFold(a, b) {
					return d.ID, b
				}
			}
		}
	}
	return "", ""
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	c, raw, err := readConfig(r)
	if err != nil || c.CallerReference == "" {
		fail(w, 400, "MalformedInput", fmt.Sprintf("DistributionConfig: %v", err))
		return
	}
	for _, d := range s.dists {
		if d.CallerReference == c.CallerReference {
			s.ops = append(s.ops, "POST refused DistributionAlreadyExists")
			fail(w, 409, "DistributionAlreadyExists", "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: "+d.ID)
			return
		}
	}
	if id, a := s.aliasOwner(c.Aliases, ""); id != "" {
		s.ops = append(s.ops, "POST refused CNAMEAlreadyExists")
		fail(w, 409, "CNAMEAlreadyExists", "One or more of the CNAMEs you provided are already associated with a different resource: "+a)
		return
	}
	d := s.newDist()
	s.apply(d, c, raw)
	s.ops = append(s.ops, "POST create "+d.ID)
	w.Header().Set("ETag", d.ETag)
	w.Header().Set("Location", s.URL+"/2020-05-31/distribution/"+d.ID)
	s.writeDist(w, 201, d)
}

func (s *Server) apply(d *Distribution, c config, raw string) {
	d.CallerReference, d.Comment, d.Enabled, d.Aliases, d.raw = c.CallerReference, c.Comment, c.Enabled, c.Aliases, raw
	d.Origin = ""
	if len(c.Origins) > 0 {
		d.Origin = c.Origins[0]
	}
}

func (s *Server) get(w http.ResponseWriter, id string) {
	d, ok := s.dists[id]
	if !ok {
		fail(w, 404, "NoSuchDistribution", "The specified distribution does not exist: "+id)
		return
	}
	if d.Status == "InProgress" {
		d.reads++
		if d.reads > s.DeployReads {
			d.Status = "Deployed"
		}
	}
	w.Header().Set("ETag", d.ETag)
	s.writeDist(w, 200, d)
}

// ifMatch checks If-Match against d's ETag; it answers the refusal itself.
func (s *Server) ifMatch(w http.ResponseWriter, r *http.Request, d *Distribution, op string) bool {
	switch got := r.Header.Get("If-Match"); {
	case got == "":
		s.ops = append(s.ops, op+" refused InvalidIfMatchVersion")
		fail(w, 400, "InvalidIfMatchVersion", "The If-Match version is missing or not valid for the resource.")
	case got != d.ETag:
		s.ops = append(s.ops, op+" refused PreconditionFailed")
		fail(w, 412, "PreconditionFailed", "The precondition given in one or more of the request header fields evaluated to false.")
	default:
		return true
	}
	return false
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, id string) {
	d, ok := s.dists[id]
	if !ok {
		fail(w, 404, "NoSuchDistribution", "The specified distribution does not exist: "+id)
		return
	}
	c, raw, err := readConfig(r)
	if err != nil {
		fail(w, 400, "MalformedInput", fmt.Sprintf("DistributionConfig: %v", err))
		return
	}
	if !s.ifMatch(w, r, d, "PUT") {
		return
	}
	if c.CallerReference != d.CallerReference {
		s.ops = append(s.ops, "PUT refused IllegalUpdate")
		fail(w, 400, "IllegalUpdate", "The caller reference of a distribution cannot be changed.")
		return
	}
	if oid, a := s.aliasOwner(c.Aliases, id); oid != "" {
		s.ops = append(s.ops, "PUT refused CNAMEAlreadyExists")
		fail(w, 409, "CNAMEAlreadyExists", "One or more of the CNAMEs you provided are already associated with a different resource: "+a)
		return
	}
	what := "update"
	if d.Enabled && !c.Enabled {
		what = "disable"
	}
	s.apply(d, c, raw)
	s.bump(d)
	s.ops = append(s.ops, "PUT "+what+" "+id)
	w.Header().Set("ETag", d.ETag)
	s.writeDist(w, 200, d)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, id string) {
	d, ok := s.dists[id]
	if !ok {
		fail(w, 404, "NoSuchDistribution", "The specified distribution does not exist: "+id)
		return
	}
	if !s.ifMatch(w, r, d, "DELETE") {
		return
	}
	if d.Enabled || d.Status != "Deployed" {
		s.ops = append(s.ops, "DELETE refused DistributionNotDisabled")
		fail(w, 409, "DistributionNotDisabled", "The distribution you are trying to delete has not been disabled.")
		return
	}
	delete(s.dists, id)
	s.ops = append(s.ops, "DELETE "+id)
	w.WriteHeader(204)
}

func (s *Server) writeDist(w http.ResponseWriter, code int, d *Distribution) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0"?><Distribution xmlns="%s"><Id>%s</Id><ARN>arn:aws:cloudfront::000000000000:distribution/%s</ARN><Status>%s</Status><LastModifiedTime>2026-01-01T00:00:00Z</LastModifiedTime><InProgressInvalidationBatches>0</InProgressInvalidationBatches><DomainName>%s</DomainName>%s</Distribution>`,
		ns, d.ID, d.ID, d.Status, d.DomainName, d.raw)
}

func (s *Server) list(w http.ResponseWriter) {
	ids := make([]string, 0, len(s.dists))
	for id := range s.dists {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><DistributionList xmlns="%s"><Marker></Marker><MaxItems>100</MaxItems><IsTruncated>false</IsTruncated><Quantity>%d</Quantity><Items>`, ns, len(ids))
	for _, id := range ids {
		d := s.dists[id]
		fmt.Fprintf(&b, "<DistributionSummary><Id>%s</Id><ARN>arn:aws:cloudfront::000000000000:distribution/%s</ARN><Status>%s</Status><LastModifiedTime>2026-01-01T00:00:00Z</LastModifiedTime><DomainName>%s</DomainName><Aliases><Quantity>%d</Quantity><Items>", d.ID, d.ID, d.Status, d.DomainName, len(d.Aliases))
		for _, a := range d.Aliases {
			fmt.Fprintf(&b, "<CNAME>%s</CNAME>", esc(a))
		}
		fmt.Fprintf(&b, "</Items></Aliases><Comment>%s</Comment><Enabled>%t</Enabled></DistributionSummary>", esc(d.Comment), d.Enabled)
	}
	b.WriteString("</Items></DistributionList>")
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, b.String())
}
