package app

import (
	"context"
	"sync"
)

// farmerLocks serialises, within one process, the commands and reactions
// that append to the same farmer.
//
// It is an optimisation, not the guarantee: correctness comes from every
// append expecting the version it decided on, which also holds between
// processes (replicas). But without it, dozens of concurrent payout
// requests for one farmer in one process would mostly lose the race, each
// losing attempt costing a full aggregate load and a refused atomic batch
// on the server; with it they queue here and each decides once, on the
// latest state.
//
// Concurrency: mu guards held; each entry's channel (capacity 1) is the
// lock itself, so a waiter can give up when its context ends. An entry is
// removed when its last user leaves.
type farmerLocks struct {
	mu   sync.Mutex
	held map[string]*farmerLock
}

type farmerLock struct {
	ch    chan struct{}
	users int
}

// lock takes farmerID's lock, waiting at most until ctx ends, and returns
// the function that releases it.
func (fl *farmerLocks) lock(ctx context.Context, farmerID string) (unlock func(), err error) {
	fl.mu.Lock()
	if fl.held == nil {
		fl.held = map[string]*farmerLock{}
	}
	e := fl.held[farmerID]
	if e == nil {
		e = &farmerLock{ch: make(chan struct{}, 1)}
		fl.held[farmerID] = e
	}
	e.users++
	fl.mu.Unlock()

	leave := func() {
		fl.mu.Lock()
		e.users--
		if e.users == 0 {
			delete(fl.held, farmerID)
		}
		fl.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
