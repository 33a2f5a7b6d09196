package graphs

import "container/list"

// DefaultIdempotencyKeys is how many recent idempotency keys a graph
// remembers: a retry must arrive within that many later keyed deltas to be
// recognised (a client retries within seconds; at 1,000 keyed deltas per
// second that is a minute).
const DefaultIdempotencyKeys = 65536

// keyLRU maps the most recent idempotency keys to the revision their delta
// produced; the least recently added key goes first.
type keyLRU struct {
	max   int
	order *list.List // of keyEntry, most recent at the front
	byKey map[string]*list.Element
	// size is the keys' bytes plus a fixed share per entry.
	size int64
}

// keyOverhead is a key's memory beside its bytes: list element, entry, map slot.
const keyOverhead = 120

type keyEntry struct {
	key string
	rev uint64
}

func newKeyLRU(max int) *keyLRU {
	return &keyLRU{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

func (l *keyLRU) get(key string) (uint64, bool) {
	e, ok := l.byKey[key]
	if !ok {
		return 0, false
	}
	return e.Value.(keyEntry).rev, true
}

func (l *keyLRU) add(key string, rev uint64) {
	if e, ok := l.byKey[key]; ok {
		e.Value = keyEntry{key, rev}
		l.order.MoveToFront(e)
		return
	}
	l.byKey[key] = l.order.PushFront(keyEntry{key, rev})
	l.size += int64(len(key)) + keyOverhead
	for l.order.Len() > l.max {
		last := l.order.Back()
		k := last.Value.(keyEntry).key
		delete(l.byKey, k)
		l.order.Remove(last)
		l.size -= int64(len(k)) + keyOverhead
	}
}

// each calls f on every key, oldest first (the order a snapshot keeps them
// in, so a restore rebuilds the same LRU).
func (l *keyLRU) each(f func(key string, rev uint64)) {
	for e := l.order.Back(); e != nil; e = e.Prev() {
		v := e.Value.(keyEntry)
		f(v.key, v.rev)
	}
}

func (l *keyLRU) len() int { return l.order.Len() }

func (l *keyLRU) bytes() int64 { return l.size }
