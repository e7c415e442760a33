package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// bannerCurl is one of the banner's curl lines, parsed: the request it
// sends, how many times (a `for i in ...; do curl ...; done` loop), and
// the statuses its comment promises.
type bannerCurl struct {
	line    string
	method  string
	url     string
	host    string
	headers http.Header
	repeat  int
	want    []int
}

func (c bannerCurl) run(t *testing.T, ctx context.Context) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, nil)
	if err != nil {
		t.Fatalf("%s: %v", c.line, err)
	}
	req.Header = c.headers.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.line, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// aliceCurl is the banner's last GET curl line with $ALICE (Alice's
// token), failing the test when there is none.
func aliceCurl(t *testing.T, banner string) bannerCurl {
	t.Helper()
	var alice bannerCurl
	for _, c := range bannerCurls(t, banner) {
		if c.method == "GET" && strings.Contains(c.line, "$ALICE") {
			alice = c
		}
	}
	if alice.line == "" {
		t.Fatalf("no GET curl line with $ALICE in the banner:\n%s", banner)
	}
	return alice
}

// bannerCurls reads the banner's shell variables (NAME='value') and its
// front-door curl lines (those writing only the status code).
func bannerCurls(t *testing.T, banner string) []bannerCurl {
	t.Helper()
	vars := map[string]string{}
	var out []bannerCurl
	for _, raw := range strings.Split(banner, "\n") {
		line := strings.TrimSpace(raw)
		words, comment := shellWords(t, line, vars)
		if len(words) == 0 {
			continue
		}
		if name, value, ok := strings.Cut(words[0], "="); ok && len(words) == 1 && name != "" && !strings.ContainsAny(name, " -/") {
			vars[name] = value
			continue
		}
		repeat := 1
		if words[0] == "for" {
			// for i in A B C; do curl ...; done
			semi, do := indexOf(words, ";"), indexOf(words, "do")
			n := len(words)
			if len(words) < 4 || words[2] != "in" || semi < 3 || do != semi+1 || words[n-1] != "done" || words[n-2] != ";" {
				t.Fatalf("banner loop not understood: %s", line)
			}
			repeat = semi - 3
			words = words[do+1 : n-2]
		}
		if words[0] != "curl" || !strings.Contains(line, "%{http_code}") {
			continue
		}
		c := bannerCurl{line: line, method: "GET", headers: http.Header{}, repeat: repeat}
		for i := 1; i < len(words); i++ {
			switch w := words[i]; w {
			case "-s":
			case "-o", "-w":
				i++
			case "-X":
				i++
				c.method = words[i]
			case "-H":
				i++
				k, v, _ := strings.Cut(words[i], ":")
				if strings.EqualFold(k, "host") {
					c.host = strings.TrimSpace(v)
				} else {
					c.headers.Set(k, strings.TrimSpace(v))
				}
			default:
				if !strings.HasPrefix(w, "http://") {
					t.Fatalf("banner curl option %q not understood: %s", w, line)
				}
				c.url = w
			}
		}
		for _, f := range strings.Fields(comment) {
			n, err := strconv.Atoi(f)
			if err != nil {
				break
			}
			c.want = append(c.want, n)
		}
		if c.url == "" || len(c.want) == 0 {
			t.Fatalf("banner curl line without a URL or the status it shows: %s", line)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("no curl lines in the banner:\n%s", banner)
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// shellWords splits a line as a POSIX shell would for the forms the
// banner uses: 'single' and "double" quotes, $NAME expanded outside single
// quotes, ";" as its own word, "#" starting a comment.
func shellWords(t *testing.T, line string, vars map[string]string) (words []string, comment string) {
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	expand := func(s string, i int) (string, int) {
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		name := s[i+1 : j]
		if name == "" {
			return "$", i + 1
		}
		v, ok := vars[name]
		if !ok {
			t.Fatalf("banner line uses $%s before setting it: %s", name, line)
		}
		return v, j
	}
	for i := 0; i < len(line); {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			flush()
			i++
		case ch == '#' && !inWord:
			return words, strings.TrimSpace(line[i+1:])
		case ch == ';':
			flush()
			words = append(words, ";")
			i++
		case ch == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 { // prose, not a command
				return nil, ""
			}
			cur.WriteString(line[i+1 : i+1+end])
			inWord = true
			i += end + 2
		case ch == '"':
			i++
			inWord = true
			for i < len(line) && line[i] != '"' {
				if line[i] == '$' {
					v, j := expand(line, i)
					cur.WriteString(v)
					i = j
					continue
				}
				cur.WriteByte(line[i])
				i++
			}
			if i >= len(line) { // prose, not a command
				return nil, ""
			}
			i++
		case ch == '$':
			v, j := expand(line, i)
			cur.WriteString(v)
			inWord = true
			i = j
		default:
			cur.WriteByte(ch)
			inWord = true
			i++
		}
	}
	flush()
	return words, ""
}
