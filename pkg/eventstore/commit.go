package eventstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit.
//
// With sync always every publish waits for an fsync, so one stream takes a
// few thousand single publishes a second however many callers publish at
// once. An atomic batch pays for its fsync once, so concurrent appends to
// one stream are coalesced: each stream has a committer that takes whatever
// appends are queued (up to MaxBatch messages), publishes them as one
// atomic batch, and answers each caller once the batch is stored. Nothing
// waits for company: a lone append goes out at once, and appends that
// arrive while a batch is in flight form the next one.
//
// Each append keeps its own expectation header on its first message, so
// optimistic concurrency is unchanged. A batch is all or nothing, and the
// server rejects the whole batch for one failed check without saying which
// message failed (nats-server 2.15 answers a batch with the first failing
// message's error only: err 10071 wrong last sequence, 10201 duplicate
// message id, ...). The committer then splits the batch in halves and
// publishes each, down to the single append that failed, which gets its
// error alone while the others are written: a batch of n with one bad
// append costs about 2·log2(n) publishes. The caller then interprets its
// error as before (a retry found by its key, or ErrConflict).
//
// Two appends whose aggregates overlap never share a batch when either
// carries an expectation: within one batch the server checks each
// expectation against the stream as it was before the batch, so a second
// append to the same aggregate would pass a check the first one
// invalidates. They go out in successive batches, in the order they were
// queued. Appends without an expectation (ExpectAny) may share a batch
// with each other.
//
// On a single server with file storage an atomic batch costs a fixed
// ~2.5 ms besides its messages (the server stages the batch in a store of
// its own and fsyncs it), about ten single publishes. So a group smaller
// than Options.MinBatch messages goes out as concurrent single publishes
// instead (each still checked and fsynced on its own), and a larger one as
// one batch.

// DefaultMinBatch is the default Options.MinBatch, measured on the 2-core
// machines Furrow is benchmarked on: an atomic batch of 8 messages costs
// about as much as 8 single sync-always publishes on one server.
const DefaultMinBatch = 8

// Options tune a Store.
type Options struct {
	// NoGroupCommit publishes every append on its own, as Furrow did before
	// group commit: for comparisons in benchmarks.
	NoGroupCommit bool
	// MinBatch is the fewest messages a queued group must hold to go out as
	// one atomic batch; a smaller group goes out as concurrent single
	// publishes. Default DefaultMinBatch; 1 batches every group of two or
	// more appends.
	MinBatch int
}

// Stats counts what a Store's appends cost.
type Stats struct {
	// Appends is how many append requests were submitted.
	Appends uint64
	// Publishes is how many publish requests were sent: single publishes
	// and atomic batches, including the retries of split batches.
	Publishes uint64
	// Groups is how many atomic batches carried more than one append, and
	// Grouped how many appends they carried.
	Groups, Grouped uint64
	// Splits is how many batches the server rejected for one of their
	// messages and were split.
	Splits uint64
	// Busy is how many batches waited because the stream had too many
	// batches open (err 10210).
	Busy uint64
}

type counters struct {
	appends, publishes, groups, grouped, splits, busy atomic.Uint64
}

// Stats returns the Store's counters so far.
func (s *Store) Stats() Stats {
	return Stats{
		Appends: s.stats.appends.Load(), Publishes: s.stats.publishes.Load(),
		Groups: s.stats.groups.Load(), Grouped: s.stats.grouped.Load(),
		Splits: s.stats.splits.Load(), Busy: s.stats.busy.Load(),
	}
}

// pending is one append request on its way. The submitting goroutine
// writes it before submit, the committer writes res and err and then
// closes done; the submitter reads them only after done is closed.
type pending struct {
	ctx   context.Context
	req   AppendRequest
	msgs  []*nats.Msg
	ids   []string
	scope scope
	check bool // req carries an expectation

	res  AppendResult // raw publish result
	err  error        // raw publish error, interpreted by settle
	done chan struct{}
}

func (p *pending) finish() { close(p.done) }

// scope is the subject space an append checks and writes, for telling
// whether two appends may share a batch. The usual aggregate filter is a
// literal prefix followed by ">", e.g. "ledger.farmer.F1.>"; such filters
// overlap when one's prefix is a token prefix of the other's. Anything
// else (a "*" in the filter, an event outside its aggregate's filter) is
// exclusive: it shares a batch with nothing.
type scope struct {
	prefix    string // literal tokens, without a trailing ".>"
	wild      bool   // the filter ends in ">"
	exclusive bool
}

func scopeOf(req AppendRequest) scope {
	f := req.Aggregate
	sc := scope{prefix: f}
	if f == ">" {
		return scope{exclusive: true}
	}
	if strings.HasSuffix(f, ".>") {
		sc.prefix, sc.wild = strings.TrimSuffix(f, ".>"), true
	}
	if strings.ContainsAny(sc.prefix, "*>") {
		return scope{exclusive: true}
	}
	for _, e := range req.Events {
		inside := e.Subject == sc.prefix
		if sc.wild {
			inside = strings.HasPrefix(e.Subject, sc.prefix+".")
		}
		if !inside {
			return scope{exclusive: true}
		}
	}
	return sc
}

// scopes is the subject space a batch being formed already covers.
type scopes struct {
	exact map[string]bool // prefix → wild, of every append taken
	under map[string]bool // every proper token prefix of a taken prefix
	any   bool            // something was taken
	sole  bool            // an exclusive append was taken
}

func (ss *scopes) overlaps(sc scope) bool {
	if !ss.any {
		return false
	}
	if ss.sole || sc.exclusive {
		return true
	}
	if _, ok := ss.exact[sc.prefix]; ok {
		return true
	}
	// A taken "a.b.>" covers our "a.b.c...".
	for i := strings.IndexByte(sc.prefix, '.'); i >= 0; {
		if ss.exact[sc.prefix[:i]] {
			return true
		}
		j := strings.IndexByte(sc.prefix[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	// Our "a.b.>" covers a taken "a.b.c...".
	return sc.wild && ss.under[sc.prefix]
}

func (ss *scopes) add(sc scope) {
	ss.any = true
	if sc.exclusive {
		ss.sole = true
		return
	}
	if ss.exact == nil {
		ss.exact, ss.under = map[string]bool{}, map[string]bool{}
	}
	ss.exact[sc.prefix] = ss.exact[sc.prefix] || sc.wild
	for i := strings.IndexByte(sc.prefix, '.'); i >= 0; {
		ss.under[sc.prefix[:i]] = true
		j := strings.IndexByte(sc.prefix[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
}

// committer publishes one stream's queued appends.
//
// Concurrency: mu guards queue and running. At most one goroutine (run)
// is publishing for a committer at a time; it is started by the submit that
// finds none running, and exits when it finds the queue empty, so an idle
// Store holds no goroutines. The pending values it takes from the queue are
// its own until it closes their done channels.
type committer struct {
	s      *Store
	stream string

	mu      sync.Mutex
	queue   []*pending
	running bool
}

func (s *Store) committer(stream string) *committer {
	if c, ok := s.committers.Load(stream); ok {
		return c.(*committer)
	}
	c, _ := s.committers.LoadOrStore(stream, &committer{s: s, stream: stream})
	return c.(*committer)
}

// submit queues ps and waits until each is published (or failed to be).
// It returns ctx's error if ctx ends first; an append already taken into
// a batch may still be written then, as when a publish's ack is lost.
func (c *committer) submit(ctx context.Context, ps ...*pending) error {
	for _, p := range ps {
		p.done = make(chan struct{})
	}
	c.mu.Lock()
	c.queue = append(c.queue, ps...)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	for _, p := range ps {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// run publishes groups until the queue is empty.
func (c *committer) run() {
	for {
		c.mu.Lock()
		group := c.take()
		if len(group) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.commit(group)
	}
}

// take removes the next group from the queue: queued appends in order, up
// to MaxBatch messages, skipping (and keeping queued, in order) those that
// may not share a batch with an append before them. Appends whose caller
// gave up are dropped. c.mu is held.
func (c *committer) take() []*pending {
	var (
		group []*pending
		// taken covers every append looked at (in the group or skipped),
		// checked only those with an expectation: an append with one may
		// overlap nothing before it, one without only others without.
		taken, checked scopes
		msgs           int
	)
	rest := c.queue[:0]
	for i, p := range c.queue {
		if msgs == MaxBatch {
			rest = append(rest, c.queue[i:]...)
			break
		}
		if err := p.ctx.Err(); err != nil {
			p.err = err
			p.finish()
			continue
		}
		clash := checked.overlaps(p.scope)
		if p.check {
			clash = taken.overlaps(p.scope)
		}
		// A skipped append blocks the later ones it would clash with too,
		// so appends to one aggregate keep their order.
		taken.add(p.scope)
		if p.check {
			checked.add(p.scope)
		}
		if clash || msgs+len(p.msgs) > MaxBatch {
			rest = append(rest, p)
			continue
		}
		group = append(group, p)
		msgs += len(p.msgs)
	}
	clear(c.queue[len(rest):])
	c.queue = rest
	return group
}

// commit publishes group, whose appends do not overlap, and finishes each.
func (c *committer) commit(group []*pending) {
	msgs := 0
	for _, p := range group {
		msgs += len(p.msgs)
	}
	if len(group) == 1 || msgs < c.s.opts.MinBatch {
		c.publishEach(group)
		return
	}
	c.publishGroup(group, msgs)
}

// publishEach publishes each append on its own, concurrently, as callers
// did before group commit, and returns when all are done.
func (c *committer) publishEach(group []*pending) {
	if len(group) == 1 {
		c.s.publishAlone(group[0].ctx, group[0])
		group[0].finish()
		return
	}
	var wg sync.WaitGroup
	for _, p := range group {
		wg.Go(func() {
			c.s.publishAlone(p.ctx, p)
			p.finish()
		})
	}
	wg.Wait()
}

// publishGroup publishes group as one atomic batch of msgs messages. If the
// server rejects it for one of its messages, the halves are committed on
// their own, down to the append at fault.
func (c *committer) publishGroup(group []*pending, msgs int) {
	all := make([]*nats.Msg, 0, msgs)
	for _, p := range group {
		all = append(all, p.msgs...)
	}
	c.s.stats.publishes.Add(1)
	// The batch is shared: no one caller's context may cancel it. The
	// client bounds it by the JetStream context's default timeout.
	res, err := c.s.publishBatch(context.Background(), all)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		c.s.stats.groups.Add(1)
		c.s.stats.grouped.Add(uint64(len(group)))
		recordGroup(len(group), msgs)
		seq := res.First
		for _, p := range group {
			n := uint64(len(p.msgs))
			p.res = AppendResult{Stream: res.Stream, First: seq, Last: seq + n - 1}
			seq += n
			p.finish()
		}
	case errors.As(err, &apiErr):
		// Rejected as a whole for one message's sake (nothing was written):
		// find it by halves.
		c.s.stats.splits.Add(1)
		half := len(group) / 2
		c.commit(group[:half])
		c.commit(group[half:])
	default:
		// Lost connection or timeout: the batch may or may not have been
		// stored. Each caller gets the error, as a lone publish would, and
		// may retry under its idempotency key.
		for _, p := range group {
			p.err = err
			p.finish()
		}
	}
}
