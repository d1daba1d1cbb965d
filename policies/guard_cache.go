package policies

import (
	"hash/maphash"
	"strings"
	"sync"
)

// cacheShards spreads the cache over this many locks.
const cacheShards = 16

// verdictCache maps statement texts to decisions, allowed and blocked alike.
// Each shard keeps two generations of entries: look-ups that hit the older
// generation move the entry to the current one, and when the current one is
// full it becomes the older one and the older one is dropped. That bounds the
// size (about the configured size) and keeps recently used texts, like an
// LRU, without a list to maintain. A nil *verdictCache caches nothing.
type verdictCache struct {
	seed   maphash.Seed
	genCap int
	shards []cacheShard
}

type cacheShard struct {
	mu       sync.Mutex
	cur, old map[string]ruleID
}

func newVerdictCache(size int) *verdictCache {
	n := cacheShards
	if size < 2*n {
		n = 1
	}
	c := &verdictCache{seed: maphash.MakeSeed(), genCap: max(1, size/(2*n)), shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]ruleID)
	}
	return c
}

func (c *verdictCache) shard(sql string) *cacheShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, sql)%uint64(len(c.shards))]
}

func (c *verdictCache) get(sql string) (ruleID, bool) {
	if c == nil || len(sql) > MaxCachedStatementLen {
		return allowed, false
	}
	s := c.shard(sql)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.cur[sql]; ok {
		return id, true
	}
	if id, ok := s.old[sql]; ok {
		delete(s.old, sql)
		s.addLocked(sql, id, c.genCap)
		return id, true
	}
	return allowed, false
}

func (c *verdictCache) put(sql string, id ruleID) {
	if c == nil || len(sql) > MaxCachedStatementLen {
		return
	}
	// The caller's string may share memory with a buffer it reuses.
	sql = strings.Clone(sql)
	s := c.shard(sql)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(sql, id, c.genCap)
}

func (s *cacheShard) addLocked(sql string, id ruleID, genCap int) {
	if len(s.cur) >= genCap {
		s.old, s.cur = s.cur, make(map[string]ruleID, genCap)
	}
	s.cur[sql] = id
}

// len returns the number of cached texts.
func (c *verdictCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.old)
		s.mu.Unlock()
	}
	return n
}
