package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// writeServingCert writes dir/name.crt and dir/name.key: a self-signed
// ECDSA certificate for hosts.
func writeServingCert(t *testing.T, dir, name string, hosts ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tlsSpec(name, cert string, hosts ...string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "gatehouse/v1", "kind": "EdgeRoute",
		"metadata": map[string]any{"name": name, "team": "shop"},
		"spec": map[string]any{
			"hosts":     hosts,
			"tls":       map[string]any{"certificate": cert},
			"upstreams": []any{map[string]any{"name": "api", "endpoints": []string{"10.0.0.5:8080"}}},
			"routes":    []any{map[string]any{"name": "all", "match": map[string]any{"pathPrefix": "/"}, "upstream": "api"}},
		},
	})
	return b
}

// TestSplitDeploymentTLS runs `gatehouse broker`, `gatehouse worker` and
// `gatehouse controlplane` as separate roles on one store, SQLite and
// DynamoDB (dynalite): a TLS spec
// provisioned over HTTP goes live (the worker compiles with the control
// plane's --cert-dir), a spec naming a certificate that does not cover its
// hosts is refused with 400, and deprovisioning the last spec completes
// confirmed by the control plane (the worker is told never to finish a
// deletion unconfirmed).
func TestSplitDeploymentTLS(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		splitDeploymentTLS(t, "sqlite:"+filepath.Join(t.TempDir(), "store.db"), nil)
	})
	t.Run("dynamodb", func(t *testing.T) {
		d := testenv.StartDynalite(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "test")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
		t.Setenv("AWS_REGION", "us-east-1")
		// The control plane's broker source takes the endpoint from the
		// standard AWS environment.
		t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", d.Endpoint)
		splitDeploymentTLS(t, "dynamodb://split-tls", []string{"--aws-endpoint", d.Endpoint})
	})
}

func splitDeploymentTLS(t *testing.T, storeURL string, awsFlags []string) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeServingCert(t, certDir, "shop-cert", "shop.example.com", "*.shop.example.com")
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("split-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	queuePath := filepath.Join(dir, "queue.db")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	brokerAdmin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	workerAdmin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cpAdmin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startRole(t, brokerAdmin, append([]string{"broker", "--http-addr", addr, "--admin-addr", brokerAdmin, "--store", storeURL,
		"--queue", "sqlite:" + queuePath, "--username", "ops", "--password-file", pw, "--cert-dir", certDir, "--log-level", "warn", "--aws-create"}, awsFlags...)...)
	startRole(t, workerAdmin, append([]string{"worker", "--admin-addr", workerAdmin, "--store", storeURL, "--queue", "sqlite:" + queuePath,
		"--cert-dir", certDir, "--unconfirmed-delete-after", "-1s", "--publish-wait", "20s", "--log-level", "warn"}, awsFlags...)...)
	// Not ready until it serves a config: do not wait for /readyz.
	startCommand(t, "controlplane", "--source", "broker:"+storeURL, "--xds-addr", xdsAddr, "--admin-addr", cpAdmin,
		"--cert-dir", certDir, "--poll-interval", "50ms", "--hold-off", "10ms", "--log-level", "warn")

	ctx := context.Background()
	c := &osbclient.Client{BaseURL: "http://" + addr, Username: "ops", Password: "split-secret"}
	r, err := c.Provision(ctx, "shop", tlsSpec("shop", "shop-cert", "shop.example.com", "api.shop.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := osbclient.Wait(ctx, 30*time.Second, func(ctx context.Context) (*osbclient.Response, error) {
		return c.LastOperation(ctx, "shop", r.Operation)
	}, nil)
	if err != nil || final.State != "succeeded" {
		t.Fatalf("TLS spec through broker, worker and control plane: %+v, %v", final, err)
	}

	// A certificate that does not cover the spec's hosts: 400 at the broker.
	_, err = c.Provision(ctx, "evil", tlsSpec("evil", "shop-cert", "evil.example.com"))
	var oe *osbclient.Error
	if !errors.As(err, &oe) || oe.Code != 400 || !strings.Contains(oe.Description, "spec.tls.certificate") || !strings.Contains(oe.Description, "does not cover") {
		t.Fatalf("certificate not covering the hosts: %v", err)
	}

	// Deprovision the last spec: the control plane publishes the empty
	// configuration and confirms the deletion.
	start := time.Now()
	r, err = c.Deprovision(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	final, err = osbclient.Wait(ctx, 25*time.Second, func(ctx context.Context) (*osbclient.Response, error) {
		return c.LastOperation(ctx, "shop", r.Operation)
	}, nil)
	if err != nil || final.Code != 410 {
		t.Fatalf("deprovisioning the last spec: %+v, %v (after %s)", final, err, time.Since(start).Round(time.Millisecond))
	}
	st, err := backend.OpenStore(ctx, storeURL, backend.Options{AWSEndpoint: os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in, err := st.GetInstance(ctx, "shop")
	if err != nil || !in.Deleted || !strings.Contains(in.Op.Description, "published") || strings.Contains(in.Op.Description, "not confirmed") {
		t.Fatalf("deprovision record: %+v, %v", in.Op, err)
	}
}
