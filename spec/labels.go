package spec

import (
	"fmt"
	"sort"
)

// Label limits: API-key labels are authorization claims (rules' claims,
// identity.labels in CEL) and reach dynamic metadata and logs, so their
// size, number and characters are bounded.
const (
	MaxLabels     = 16
	MaxLabelBytes = 64
)

// isLabelKey: ^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$
func isLabelKey(s string) bool {
	if len(s) == 0 || len(s) > MaxLabelBytes || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isLabelValue: ^[A-Za-z0-9_.:@/+=-]{0,64}$
func isLabelValue(s string) bool {
	if len(s) > MaxLabelBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != ':' && c != '@' && c != '/' && c != '+' && c != '=' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// CheckLabels returns one problem per bad label (in key order): at most
// MaxLabels labels, keys of letters, digits, '_', '.', '-' (starting and
// ending alphanumeric), values of letters, digits and "_.:@/+=-", each at
// most MaxLabelBytes bytes. Values are quoted with %q, so nothing
// unprintable reaches an error text.
func CheckLabels(labels map[string]string) []string {
	var out []string
	if len(labels) > MaxLabels {
		out = append(out, fmt.Sprintf("%d labels; at most %d are allowed", len(labels), MaxLabels))
	}
	for _, k := range sortedKeys(labels) {
		switch v := labels[k]; {
		case !isLabelKey(k):
			out = append(out, fmt.Sprintf("label key %.80q: want 1-%d letters, digits, '_', '.' or '-', starting and ending with a letter or digit", k, MaxLabelBytes))
		case !isLabelValue(v):
			out = append(out, fmt.Sprintf("label %q: value %.80q: want at most %d letters, digits or any of _.:@/+=-", k, v, MaxLabelBytes))
		}
	}
	return out
}

// CheckBindLabels checks the labels a binding asks for against the
// provider's bindLabels allow-list (and CheckLabels): with no allow-list
// no label is allowed.
func CheckBindLabels(p APIKeyProvider, labels map[string]string) []string {
	out := CheckLabels(labels)
	if len(out) > 0 {
		return out
	}
	for _, k := range sortedKeys(labels) {
		allowed, ok := p.BindLabels[k]
		if !ok {
			if len(p.BindLabels) == 0 {
				out = append(out, fmt.Sprintf("label %q: apiKeys provider %q allows no binding labels (the EdgeRoute sets them with bindLabels)", k, p.Name))
			} else {
				out = append(out, fmt.Sprintf("label %q is not allowed for apiKeys provider %q (bindLabels allows: %s)", k, p.Name, joinSorted(p.BindLabels)))
			}
			continue
		}
		found := false
		for _, a := range allowed {
			if a == labels[k] {
				found = true
				break
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("label %q: value %q is not allowed for apiKeys provider %q (allowed: %v)", k, labels[k], p.Name, allowed))
		}
	}
	return out
}

func (v *validator) bindLabels(p string, bl map[string][]string) {
	if bl == nil {
		return
	}
	if len(bl) > MaxLabels {
		v.fail(p, "%d label keys; at most %d are allowed", len(bl), MaxLabels)
	}
	for _, k := range sortedKeys(bl) {
		kp := p + "." + k
		if !isLabelKey(k) {
			v.fail(p, "label key %.80q: want 1-%d letters, digits, '_', '.' or '-', starting and ending with a letter or digit", k, MaxLabelBytes)
			continue
		}
		if len(bl[k]) == 0 {
			v.fail(kp, "list the values a binding may choose (at least one)")
		}
		if len(bl[k]) > 64 {
			v.fail(kp, "%d values; at most 64 are allowed", len(bl[k]))
		}
		for i, val := range bl[k] {
			if !isLabelValue(val) {
				v.fail(joinIndex(kp, i), "value %.80q: want at most %d letters, digits or any of _.:@/+=-", val, MaxLabelBytes)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinSorted(m map[string][]string) string {
	s := ""
	for i, k := range sortedKeys(m) {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s
}
