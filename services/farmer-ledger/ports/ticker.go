package ports

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Ticker is a Watermill Subscriber that delivers an empty message every
// interval, so that periodic work (asking a payment provider about late
// settlements) runs as a router handler, with the router's lifecycle,
// middleware and graceful shutdown, instead of in a goroutine of its own.
//
// Concurrency: each subscription's goroutine owns its channel and emits
// the next tick only after the previous one was acked or nacked, so ticks
// never overlap; ticks that fall due meanwhile are dropped, not queued.
// mu guards closed and cancels; Close waits for the goroutines on wg.
type Ticker struct {
	every time.Duration

	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*Ticker)(nil)

// NewTicker returns a Ticker ticking every interval.
func NewTicker(every time.Duration) *Ticker { return &Ticker{every: every} }

// Subscribe implements message.Subscriber; the topic is only a name.
func (t *Ticker) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("ticker: closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	t.cancels = append(t.cancels, cancel)
	out := make(chan *message.Message)
	t.wg.Add(1)
	go t.run(ctx, out)
	return out, nil
}

func (t *Ticker) run(ctx context.Context, out chan<- *message.Message) {
	defer t.wg.Done()
	defer close(out)
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		m := message.NewMessage(watermill.NewUUID(), nil)
		mctx, cancel := context.WithCancel(ctx)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			cancel()
			return
		}
		select {
		case <-m.Acked():
		case <-m.Nacked():
		case <-ctx.Done():
		}
		cancel()
	}
}

// Close implements message.Subscriber.
func (t *Ticker) Close() error {
	t.mu.Lock()
	t.closed = true
	cancels := t.cancels
	t.cancels = nil
	t.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	t.wg.Wait()
	return nil
}
