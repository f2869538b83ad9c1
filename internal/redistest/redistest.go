// Package redistest gives tests a client of the real redis-server that scripts/stack.sh starts
// (127.0.0.1:6379, or FD_TEST_REDIS), and a key prefix of their own that is deleted after.
package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

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
