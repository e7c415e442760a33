package spec

import "strings"

// Hand-written forms of the validation patterns below, which validation
// runs on every name, host and header of every spec (the regexps cost a
// noticeable share of a cold compile). match_test.go fuzzes each against
// its pattern.
//
//	isName:       ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$
//	isHost:       ^(\*\.)?NAME(\.NAME)*$
//	isHeaderName: ^[a-z0-9!#$%&'*+\-.^_|~`]+$
//	isHex64:      ^[0-9a-f]{64}$
//	isUpperWord:  ^[A-Z]+$

func isName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isHost(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	for {
		label, rest, more := strings.Cut(s, ".")
		if !isName(label) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_|~`", rune(c)) {
			return false
		}
	}
	return true
}

// isQueryName: 1 to 64 URL-unreserved characters ([A-Za-z0-9._~-]).
func isQueryName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isUpperWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
