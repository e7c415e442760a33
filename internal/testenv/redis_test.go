package testenv

import (
	"net"
	"testing"
	"time"
)

func TestStartRedisStopRestart(t *testing.T) {
	r := StartRedis(t)
	if err := waitPing(r.Addr, time.Second); err != nil {
		t.Fatalf("fresh server: %v", err)
	}
	r.Stop()
	if c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("server still accepts connections after Stop")
	}
	r.Restart(t)
	if err := waitPing(r.Addr, time.Second); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
