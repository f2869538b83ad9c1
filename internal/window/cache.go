package window

import (
	"encoding/binary"
	"sync"
)

// cardState is a process's copy of a card's history as Redis had it after the last batch that
// touched the card: the head's header and every entry kept, in order.
type cardState struct {
	header  string
	history string
	idx     indexOf // an index of history, for the next batch that takes it
}

// take returns the index of the card's history, if it has one and no other batch took it: a batch
// grows the index it takes, and leaves it on the state it makes.
func (c *cardState) take() *index {
	x := c.idx.Swap(nil)
	if x != nil && x.n*entrySize != len(c.history) {
		return nil
	}
	return x
}

// headLen is the length of the card's head in Redis: the header and the open entries.
func (c *cardState) headLen() int {
	sealed := int(binary.BigEndian.Uint16([]byte(c.header[2:4])))
	return headerSize + len(c.history) - sealed*chunkEntries*entrySize
}

// cacheShards spread the cards over locks: each partition's goroutine calls Observe.
const cacheShards = 64

// cardCache keeps card histories up to a number of bytes; past it, it forgets cards at random
// (a forgotten card is read whole from Redis once).
type cardCache struct {
	limit  int64 // bytes per shard
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.Mutex
	m     map[string]*cardState
	bytes int64
}

// cardOverhead is about what a cached card costs beyond its bytes: the map's entry, the key and
// the struct.
const cardOverhead = 96

func newCardCache(limit int64) *cardCache {
	return &cardCache{limit: max(limit/cacheShards, 1)}
}

func (c *cardCache) shard(id string) *cacheShard { return &c.shards[id[0]%cacheShards] }

func (c *cardCache) get(id string) *cardState {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[id]
}

// size is what a cached card costs: with an index (see index), about 40 bytes more an entry.
func size(id string, st *cardState) int64 {
	return int64(len(id)+len(st.header)+cardOverhead) + int64(len(st.history))*(1+40/entrySize)
}

func (c *cardCache) put(id string, st *cardState) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = map[string]*cardState{}
	}
	if old := sh.m[id]; old != nil {
		sh.bytes -= size(id, old)
	}
	sh.m[id] = st
	sh.bytes += size(id, st)
	if sh.bytes <= c.limit {
		return
	}
	// Over the limit: forget other cards (a map's order is random) down to nine tenths of it.
	for k, v := range sh.m {
		if sh.bytes <= c.limit*9/10 {
			break
		}
		if k != id {
			delete(sh.m, k)
			sh.bytes -= size(k, v)
		}
	}
}

func (c *cardCache) drop(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[id]; old != nil {
		sh.bytes -= size(id, old)
		delete(sh.m, id)
	}
}

func (c *cardCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.m, sh.bytes = nil, 0
		sh.mu.Unlock()
	}
}
