package projection

import "sync"

// broadcast wakes every waiter at once: a channel closed and replaced at
// each notify, which a waiter selects on together with its context (unlike
// sync.Cond). The zero value is ready; mu is a leaf lock, so notify may be
// called with any other lock held.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns the channel the next notify closes.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// notify wakes every waiter; without waiters it costs a lock.
func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Changed returns a channel closed at the next change of the projection's
// status in this process: a copy's checkpoint moves, a copy catches up,
// starts or stops being fed, changes role (a rebuild, a swap, a drop),
// fails or recovers, or the projection is paused or resumed here. Take the
// channel before reading Status, so that no change between the two is
// missed. Lag, lag time and rate also move as the stream grows and time
// passes, which Changed does not signal: a watcher reads Status on a timer
// as well (the admin's WatchProjection does both).
func (r *Runner) Changed() <-chan struct{} { return r.changes.wait() }
