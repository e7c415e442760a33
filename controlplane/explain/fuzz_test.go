package explain

import "testing"

// FuzzParseRequest: no input panics; a parsed request has a method.
func FuzzParseRequest(f *testing.F) {
	f.Add("GET https://petstore.example.com/pets", "x-api-key: k")
	f.Add("POST https://a/b?c=d", "authorization: Bearer x")
	f.Add("", ":")
	f.Fuzz(func(t *testing.T, line, header string) {
		r, err := ParseRequest(line, []string{header})
		if err == nil && r.Method == "" && line != "" && line[0] != ' ' {
			t.Fatalf("parsed %q without a method", line)
		}
	})
}
