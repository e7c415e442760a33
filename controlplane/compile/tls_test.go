package compile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// writeTestCert writes dir/name.crt and dir/name.key: a self-signed
// Ed25519 certificate for hosts, generated from seed (Ed25519 keys and
// signatures are deterministic, so goldens are stable) and returns the
// key PEM.
func writeTestCert(t testing.TB, dir, name string, seed byte, hosts ...string) []byte {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(seed) + 1),
		Subject:      pkix.Name{CommonName: hosts[0]},
		DNSNames:     hosts,
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyPEM
}

// TestGoldenTLS compiles testdata/tls/*.yaml with a cert dir and compares
// the rendered resources (HTTPS listener, SDS secret with its private key
// redacted) with testdata/tls/edge.json; -update rewrites it.
func TestGoldenTLS(t *testing.T) {
	dir := t.TempDir()
	keyPEM := writeTestCert(t, dir, "shop-cert", 7, "shop.example.com", "*.shop.example.com")
	files, err := filepath.Glob("testdata/tls/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	c, err := New(Options{CertDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(readRevision(t, files...))
	for _, s := range res.Specs {
		if s.Err != nil {
			t.Fatalf("%s failed: %v", s.Origin, s.Err)
		}
	}
	r, warnings, err := res.Resources("edge")
	if err != nil {
		t.Fatal(err)
	}
	// The served secret carries the key; the rendering does not.
	secs := r[resourcev3.SecretType]
	if len(secs) != 1 || !bytes.Equal(secs[0].(*tlsv3.Secret).GetTlsCertificate().GetPrivateKey().GetInlineBytes(), keyPEM) {
		t.Fatalf("secrets = %v, want shop-cert with its key inline", secs)
	}
	got, err := Render("edge", res.GroupVersion("edge"), r, warnings)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, keyPEM) || bytes.Contains(got, []byte("PRIVATE KEY")) || !bytes.Contains(got, []byte(Redacted)) {
		t.Fatal("rendered config does not redact the private key")
	}
	golden := "testdata/tls/edge.json"
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(bytes.TrimSpace(want)), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); if intended, run go test ./controlplane/compile -update:\n%s", golden, diff)
	}
}

// TestTLSCertificateProblemsArePruned: a spec naming a certificate the
// cert dir lacks, or a certificate whose key does not match, is left out
// with an error naming spec.tls.certificate; the others still ship.
func TestTLSCertificateProblemsArePruned(t *testing.T) {
	dir := t.TempDir()
	keyPEM := writeTestCert(t, dir, "good", 1, "good.example.com")
	writeTestCert(t, dir, "mismatch", 2, "mismatch.example.com")
	other := writeTestCert(t, t.TempDir(), "x", 3, "x.example.com")
	if err := os.WriteFile(filepath.Join(dir, "mismatch.key"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	withTLS := func(name, host, cert string) []byte {
		return []byte(strings.Replace(string(specBytes(name, host)), "spec:\n", "spec:\n  tls: {certificate: "+cert+"}\n", 1))
	}
	c, err := New(Options{CertDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "r1", Specs: []source.Spec{
		{Origin: "plain.yaml", Data: specBytes("plain", "plain.example.com")},
		{Origin: "good.yaml", Data: withTLS("good", "good.example.com", "good")},
		{Origin: "missing.yaml", Data: withTLS("missing", "missing.example.com", "absent")},
		{Origin: "mismatch.yaml", Data: withTLS("mismatch", "mismatch.example.com", "mismatch")},
	}})
	wantErr := map[string]string{
		"missing.yaml":  `missing.yaml: spec missing: spec.tls.certificate: certificate "absent": open ` + filepath.Join(dir, "absent.crt"),
		"mismatch.yaml": `spec.tls.certificate: certificate "mismatch": ` + filepath.Join(dir, "mismatch.crt") + " and " + filepath.Join(dir, "mismatch.key") + " are not a matching PEM certificate and private key",
	}
	for _, s := range res.Specs {
		want, bad := wantErr[s.Origin]
		switch {
		case !bad && s.Err != nil:
			t.Errorf("%s: unexpected error %v", s.Origin, s.Err)
		case bad && (s.Err == nil || !strings.Contains(s.Err.Error(), want)):
			t.Errorf("%s: error %v, want one containing %q", s.Origin, s.Err, want)
		case bad && (strings.Contains(s.Err.Error(), string(other)) || strings.Contains(s.Err.Error(), "PRIVATE KEY")):
			t.Errorf("%s: error carries key bytes", s.Origin)
		}
	}
	r, _, err := res.Resources("any")
	if err != nil {
		t.Fatal(err)
	}
	var lis []string
	for _, l := range r[resourcev3.ListenerType] {
		lis = append(lis, l.(*listenerv3.Listener).GetName())
	}
	if !slices.Equal(lis, []string{envoy.HTTPListener, envoy.HTTPSListener}) {
		t.Fatalf("listeners = %v", lis)
	}
	https := r[resourcev3.ListenerType][1].(*listenerv3.Listener)
	if fcs := https.GetFilterChains(); len(fcs) != 1 || !slices.Equal(fcs[0].GetFilterChainMatch().GetServerNames(), []string{"good.example.com"}) {
		t.Fatalf("HTTPS filter chains = %v", fcs)
	}
	if secs := r[resourcev3.SecretType]; len(secs) != 1 || secs[0].(*tlsv3.Secret).GetName() != "good" ||
		!bytes.Equal(secs[0].(*tlsv3.Secret).GetTlsCertificate().GetPrivateKey().GetInlineBytes(), keyPEM) {
		t.Fatalf("secrets = %v", secs)
	}

	// Without a cert dir the spec fails with a clear error.
	c2, _ := New(Options{})
	res2 := c2.Compile(source.Revision{ID: "r1", Specs: []source.Spec{{Origin: "good.yaml", Data: withTLS("good", "good.example.com", "good")}}})
	if err := res2.Specs[0].Err; err == nil || !strings.Contains(err.Error(), "no certificate directory (--cert-dir)") {
		t.Fatalf("without a cert dir: %v", err)
	}
}

// TestNoCertificateNoHTTPS: specs without tls get the HTTP listener only,
// with or without a cert dir.
func TestNoCertificateNoHTTPS(t *testing.T) {
	for _, o := range []Options{{}, {CertDir: t.TempDir()}} {
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := c.Compile(source.Revision{ID: "r", Specs: []source.Spec{{Origin: "a.yaml", Data: specBytes("a", "a.example.com")}}}).Resources("g")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(r[resourcev3.ListenerType]); n != 1 || r[resourcev3.SecretType] != nil {
			t.Errorf("options %+v: %d listeners, secrets %v; want the HTTP listener only", o, n, r[resourcev3.SecretType])
		}
	}
}
