package redisstore

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestPasswordFileAuthenticates: against a redis-server that requires a
// password, a store without it is refused, one with --redis-password-file
// works, and the password shows in no error.
func TestPasswordFileAuthenticates(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pw = "s3cret-redis-password"
	if err := admin.ConfigSet(ctx, "requirepass", pw).Err(); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	without, err := New(Options{URL: "redis://" + r.Addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	if err := without.Ping(ctx); err == nil {
		t.Fatal("a store without the password was served")
	}

	with, err := New(Options{URL: "redis://" + r.Addr, PasswordFile: pwFile, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	if err := with.Ping(ctx); err != nil {
		t.Fatalf("with the password file: %v", err)
	}

	os.WriteFile(pwFile, []byte("wrong\n"), 0o600)
	wrong, err := New(Options{URL: "redis://" + r.Addr, PasswordFile: pwFile, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Ping(ctx); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := New(Options{URL: "redis://" + r.Addr, PasswordFile: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Fatal("a missing password file was accepted")
	}
}

// TestRedissSpeaksTLS: rediss:// connects over TLS to a redis-server's
// TLS port, verified against --redis-ca-file; without the CA the
// certificate is refused; the plaintext scheme gets no answer there.
func TestRedissSpeaksTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	cert, key := pki.Server(t, "redis")
	tlsPort := testenv.FreePort(t)
	testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", pki.CAFile, "--tls-auth-clients", "no")
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, err := New(Options{URL: "rediss://" + addr, TLSCAFile: pki.CAFile, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("rediss with the CA: %v", err)
	}
	noCA, _ := New(Options{URL: "rediss://" + addr, Timeout: time.Second})
	defer noCA.Close()
	if err := noCA.Ping(ctx); err == nil {
		t.Fatal("rediss trusted a certificate of an unknown CA")
	}
	plain, _ := New(Options{URL: "redis://" + addr, Timeout: 300 * time.Millisecond})
	defer plain.Close()
	if err := plain.Ping(ctx); err == nil {
		t.Fatal("plaintext got an answer from the TLS port")
	}
	if _, err := New(Options{URL: "redis://" + addr, TLSCAFile: pki.CAFile}); err == nil {
		t.Fatal("a CA file with a plaintext URL was accepted")
	}
	for _, u := range []string{"rediss://h:1", "rediss+cluster://a:1,b:2", "rediss+sentinel://a:1/m"} {
		o, err := ParseURL(u)
		if err != nil || o.TLSConfig == nil {
			t.Errorf("%s: %v, TLS %v", u, err, o != nil && o.TLSConfig != nil)
		}
	}
}
