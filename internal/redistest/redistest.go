// Package redistest gives tests a client of the real redis-server that scripts/stack.sh starts
// (127.0.0.1:6379, or FD_TEST_REDIS), and a key prefix of their own that is deleted after; or a
// redis-server of their own.
package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// New returns a client and a fresh key prefix starting with name; the test fails, saying how to
// start Redis, when it cannot reach it. The prefix's keys and the client go when the test ends.
func New(t testing.TB, name string) (*redis.Client, string) {
	t.Helper()
	addr := os.Getenv("FD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v (start it with scripts/stack.sh up, or set FD_TEST_REDIS)", addr, err)
	}
	prefix := fmt.Sprintf("%s%d", name, rand.Int64())
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Unlink(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}

// Start starts a redis-server of the test's own on a free port given with portFlag (--port, or
// --tls-port for TLS), with args, and returns its address once it accepts connections; it stops
// when the test ends. scripts/stack.sh installs redis-server.
func Start(t testing.TB, portFlag string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (scripts/stack.sh install, or apt-get install redis-server): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	args = append([]string{"--bind", "127.0.0.1", portFlag, fmt.Sprint(port), "--dir", dir, "--save", "", "--appendonly", "no"}, args...)
	if portFlag != "--port" {
		args = append(args, "--port", "0")
	}
	cmd := exec.Command(bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("redis-server %v exited:\n%s", args, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
