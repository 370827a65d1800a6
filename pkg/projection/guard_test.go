package projection_test

import (
	"context"
	"database/sql"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

// careless is the counter with the mistake the guard exists for: once
// bare is set, its Apply names its table without projection.Table, i.e.
// the logical name, which is the view of the live copy.
type careless struct {
	*counter
	bare atomic.Bool
}

func (c *careless) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	if !c.bare.Load() {
		return c.counter.Apply(ctx, tx, ev)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO `+c.name+` (seq, subject, times, batch) VALUES ($1, $2, 1, 0)
		ON CONFLICT (seq) DO UPDATE SET times = `+c.name+`.times + 1`, int64(ev.Sequence), ev.Subject)
	return err
}

// A shadow rebuild whose Apply writes the logical (live) table name fails
// loudly, naming the table, and leaves the live copy as it was.
func TestShadowRebuildCannotWriteLiveCopy(t *testing.T) {
	forEachStore(t, testShadowRebuildCannotWriteLiveCopy)
}

func testShadowRebuildCannotWriteLiveCopy(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	seqs := appendEvents(t, js, repeat("test.a.g", 5)...)
	c := &careless{counter: newCounter("guarded")}
	r := newRunner(t, db, js, c, projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond})
	start(t, r)
	waitFor(t, r, seqs[len(seqs)-1])
	before := applied(t, db, "guarded")
	if diff := cmp.Diff(once(seqs...), before); diff != "" {
		t.Fatalf("live copy before the rebuild (-want +got):\n%s", diff)
	}

	c.bare.Store(true) // the bug: Apply forgets projection.Table
	if _, err := r.Rebuild(context.Background(), projection.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var shadow projection.CopyStatus
	eventually(t, "shadow copy blocked or caught up", func() bool {
		for _, cp := range status(t, r).Copies {
			if cp.Role == "shadow" {
				shadow = cp
				return cp.State == projection.StateBlocked || cp.CaughtUp
			}
		}
		return false
	})
	if diff := cmp.Diff(before, applied(t, db, "guarded")); diff != "" {
		t.Errorf("the shadow rebuild wrote into the live copy (-before +after):\n%s", diff)
	}
	if shadow.State != projection.StateBlocked {
		t.Fatalf("shadow copy = %s (caught up %v), want blocked at its first event", shadow.State, shadow.CaughtUp)
	}
	for _, want := range []string{"guarded", "projection.Table"} {
		if !strings.Contains(shadow.Reason, want) {
			t.Errorf("shadow copy's reason %q does not name %q", shadow.Reason, want)
		}
	}
	t.Logf("reason: %s", shadow.Reason)
}
