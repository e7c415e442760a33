package controlplane_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

const sdsType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// writeCert writes dir/name.crt and dir/name.key, a fresh self-signed
// ECDSA certificate for host, and returns the key PEM.
func writeCert(t *testing.T, dir, name, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func withTLS(body, cert string) string {
	return strings.Replace(body, "spec:\n", "spec:\n  tls: {certificate: "+cert+"}\n", 1)
}

// TestHTTPSListenerAndSecretOverADS: with a cert dir, a spec naming a
// certificate gives its node group an HTTPS listener (SNI = the spec's
// hosts, the secret by SDS over ADS) and the Secret itself over ADS; a
// spec naming a certificate the dir lacks is left out with an error and
// blocks nobody; private keys stay out of logs and /debug/config.
func TestHTTPSListenerAndSecretOverADS(t *testing.T) {
	certDir := t.TempDir()
	certPEM, keyPEM := writeCert(t, certDir, "shop-cert", "shop.example.com")
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := controlplane.Config{Log: log}
	cfg.Compile.CertDir = certDir
	cfg.Compile.HTTPSAddress = "0.0.0.0:8443"
	h := startControlPlane(t, cfg, map[string]string{
		"shop.yaml":    withTLS(specYAML("shop", "shop.example.com", "192.0.2.10:9080"), "shop-cert"),
		"plain.yaml":   specYAML("plain", "plain.example.com", "192.0.2.11:9081"),
		"missing.yaml": withTLS(specYAML("missing", "missing.example.com", "192.0.2.12:9082"), "no-such-cert"),
	})
	c := dialADS(t, h.addr, "envoy-1", "edge")

	c.send(ldsType, nil, "", "", "")
	lds := c.recv(ldsType)
	got := names(t, lds, func() *listenerv3.Listener { return &listenerv3.Listener{} })
	if !slices.Equal(slices.Sorted(slices.Values(got)), []string{"gatehouse_http", "gatehouse_https"}) {
		t.Fatalf("LDS = %v", got)
	}
	https := &listenerv3.Listener{}
	if err := lds.GetResources()[slices.Index(got, "gatehouse_https")].UnmarshalTo(https); err != nil {
		t.Fatal(err)
	}
	if sa := https.GetAddress().GetSocketAddress(); sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 8443 {
		t.Errorf("HTTPS listener address = %v", sa)
	}
	fcs := https.GetFilterChains()
	if len(fcs) != 1 || !slices.Equal(fcs[0].GetFilterChainMatch().GetServerNames(), []string{"shop.example.com"}) {
		t.Fatalf("HTTPS filter chains = %v", fcs)
	}
	dtc := &tlsv3.DownstreamTlsContext{}
	if err := fcs[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(dtc); err != nil {
		t.Fatal(err)
	}
	sds := dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()
	if len(sds) != 1 || sds[0].GetName() != "shop-cert" || sds[0].GetSdsConfig().GetAds() == nil {
		t.Fatalf("DownstreamTlsContext SDS configs = %v", sds)
	}
	c.send(ldsType, nil, lds.GetVersionInfo(), lds.GetNonce(), "")

	// Envoy asks for the secret the listener names, over the same stream.
	c.send(sdsType, []string{"shop-cert"}, "", "", "")
	resp := c.recv(sdsType)
	if len(resp.GetResources()) != 1 {
		t.Fatalf("SDS = %v", resp.GetResources())
	}
	sec := &tlsv3.Secret{}
	if err := resp.GetResources()[0].UnmarshalTo(sec); err != nil {
		t.Fatal(err)
	}
	tc := sec.GetTlsCertificate()
	if sec.GetName() != "shop-cert" || !bytes.Equal(tc.GetCertificateChain().GetInlineBytes(), certPEM) || !bytes.Equal(tc.GetPrivateKey().GetInlineBytes(), keyPEM) {
		t.Fatalf("secret %s does not carry the certificate and key of the cert dir", sec.GetName())
	}
	if v := typeVersions(t, h.cp, "edge")[sdsType]; resp.GetVersionInfo() != v || v == lds.GetVersionInfo() {
		t.Errorf("SDS version %q, want the secrets' own version %q (LDS is at %q)", resp.GetVersionInfo(), v, lds.GetVersionInfo())
	}
	c.send(sdsType, []string{"shop-cert"}, resp.GetVersionInfo(), resp.GetNonce(), "")

	// The spec naming a missing certificate is left out, with its error
	// (the state is recorded just after publishing: wait for it).
	var missing *controlplane.SpecStatus
	for deadline := time.Now().Add(10 * time.Second); missing == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range h.cp.State().Specs {
			switch {
			case s.Name == "missing":
				missing = &s
			case !s.Published:
				t.Errorf("spec %s not published: %s", s.Name, s.Error)
			}
		}
	}
	if missing == nil || missing.Published || !strings.Contains(missing.Error, `spec.tls.certificate: certificate "no-such-cert"`) {
		t.Fatalf("missing spec status = %+v", missing)
	}

	// /debug/config shows the secret with the key redacted.
	admin := telemetry.NewAdmin(log, h.reg)
	h.cp.RegisterDebug(admin)
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	r, err := srv.Client().Get(srv.URL + "/debug/config?node_group=edge")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !bytes.Contains(body, []byte(`"name": "shop-cert"`)) && !bytes.Contains(body, []byte(`"name":"shop-cert"`)) {
		t.Fatalf("/debug/config has no shop-cert secret:\n%s", body)
	}
	if !bytes.Contains(body, []byte(compile.Redacted)) || bytes.Contains(body, []byte("PRIVATE KEY")) || bytes.Contains(body, keyPEM) {
		t.Fatal("/debug/config does not redact the private key")
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(logs.String(), string(keyPEM)) {
		t.Fatal("a private key reached the log")
	}
}

// TestNoCertDirNoHTTPS: without a cert dir (gatehouse dev) a fleet node
// gets the HTTP listener only, as before.
func TestNoCertDirNoHTTPS(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, examples(t))
	c := dialADS(t, h.addr, "envoy-1", "us-east-1")
	c.send(ldsType, nil, "", "", "")
	lds := c.recv(ldsType)
	if got := names(t, lds, func() *listenerv3.Listener { return &listenerv3.Listener{} }); !slices.Equal(got, []string{"gatehouse_http"}) {
		t.Fatalf("LDS = %v", got)
	}
}

// TestRenewedCertificateIsServed: a certificate renewed in the cert dir
// reaches Envoy over SDS without a spec change or a restart, and a spec
// that named a certificate not there yet is published once it appears.
func TestRenewedCertificateIsServed(t *testing.T) {
	certDir := t.TempDir()
	writeCert(t, certDir, "shop-cert", "shop.example.com")
	cfg := controlplane.Config{CertPoll: 20 * time.Millisecond}
	cfg.Compile.CertDir = certDir
	h := startControlPlane(t, cfg, map[string]string{
		"shop.yaml":  withTLS(specYAML("shop", "shop.example.com", "192.0.2.10:9080"), "shop-cert"),
		"later.yaml": withTLS(specYAML("later", "later.example.com", "192.0.2.11:9081"), "later-cert"),
	})
	c := dialADS(t, h.addr, "envoy-1", "edge")
	secret := func(resp *discoveryv3.DiscoveryResponse) *tlsv3.Secret {
		t.Helper()
		if len(resp.GetResources()) != 1 {
			t.Fatalf("SDS = %v", resp.GetResources())
		}
		sec := &tlsv3.Secret{}
		if err := resp.GetResources()[0].UnmarshalTo(sec); err != nil {
			t.Fatal(err)
		}
		return sec
	}
	c.send(sdsType, []string{"shop-cert"}, "", "", "")
	first := c.recv(sdsType)
	secret(first)
	c.send(sdsType, []string{"shop-cert"}, first.GetVersionInfo(), first.GetNonce(), "")

	// Renew shop-cert and add later-cert.
	certPEM, keyPEM := writeCert(t, certDir, "shop-cert", "shop.example.com")
	writeCert(t, certDir, "later-cert", "later.example.com")
	renewed := c.recv(sdsType)
	if renewed.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatalf("renewed secret sent at the old version %q", first.GetVersionInfo())
	}
	tc := secret(renewed).GetTlsCertificate()
	if !bytes.Equal(tc.GetCertificateChain().GetInlineBytes(), certPEM) || !bytes.Equal(tc.GetPrivateKey().GetInlineBytes(), keyPEM) {
		t.Fatal("SDS after renewal does not carry the renewed certificate and key")
	}
	c.send(sdsType, []string{"shop-cert"}, renewed.GetVersionInfo(), renewed.GetNonce(), "")

	// A mismatched pair (the certificate of one key, another key) would
	// take shop down: refused, shop stays published on the pair it has.
	badCert, _ := writeCert(t, t.TempDir(), "x", "shop.example.com")
	if err := os.WriteFile(filepath.Join(certDir, "shop-cert.crt"), badCert, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); h.cp.State().CertError == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a mismatched renewal was not refused")
		}
	}
	if st := h.cp.State(); !strings.Contains(st.CertError, "shop") {
		t.Fatalf("cert error = %q", st.CertError)
	}
	// Fixed: the good pair goes out and the error clears.
	certPEM, _ = writeCert(t, certDir, "shop-cert", "shop.example.com")
	fixed := c.recv(sdsType)
	if !bytes.Equal(secret(fixed).GetTlsCertificate().GetCertificateChain().GetInlineBytes(), certPEM) {
		t.Fatal("SDS after the fix does not carry the fixed certificate")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		published := 0
		for _, s := range h.cp.State().Specs {
			if s.Published {
				published++
			}
		}
		if published == 2 && h.cp.State().CertError == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after later-cert appeared: %+v", h.cp.State().Specs)
		}
	}
}
