package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/furrow/furrow/pkg/eventstore"
)

// RebuildOptions say where a rebuild starts. The zero value rebuilds from
// the start of the stream.
type RebuildOptions struct {
	// FromSeq starts the shadow copy at this stream sequence: it reflects
	// only the events from there on.
	FromSeq uint64
	// FromTime starts it at the first event the stream stored at or after
	// this time. At most one of FromSeq and FromTime may be set.
	FromTime time.Time
}

// Rebuild creates a shadow copy of a Versioned projection and starts
// feeding it from the stream, beside the live copy, which keeps serving.
// It returns the new copy's version; Status shows its progress. The Runner
// must be running. There is at most one shadow copy at a time.
func (r *Runner) Rebuild(ctx context.Context, opts RebuildOptions) (int64, error) {
	if !r.versioned {
		return 0, fmt.Errorf("rebuild %s: %w", r.name, ErrNotVersioned)
	}
	if opts.FromSeq != 0 && !opts.FromTime.IsZero() {
		return 0, fmt.Errorf("rebuild %s: %w: give a start sequence or a start time, not both", r.name, ErrInvalidConfig)
	}
	r.ops.Lock()
	defer r.ops.Unlock()
	if !r.Running() {
		return 0, fmt.Errorf("rebuild %s: %w", r.name, ErrNotRunning)
	}
	from := max(opts.FromSeq, 1)
	if !opts.FromTime.IsZero() {
		seq, err := r.seqAt(ctx, opts.FromTime)
		if err != nil {
			return 0, fmt.Errorf("rebuild %s: %w", r.name, err)
		}
		from = seq
	}

	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	defer release()
	defer tx.Rollback()
	if err := r.db.dialect.lockMigrations(ctx, tx); err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	copies, err := loadCopies(ctx, tx, r.name)
	if err != nil {
		return 0, err
	}
	var version int64
	for _, c := range copies {
		if c.Role == roleShadow {
			return 0, fmt.Errorf("rebuild %s: %w: copy %d (swap or drop it first)", r.name, ErrShadowExists, c.Version)
		}
		version = max(version, c.Version)
	}
	version++
	now := formatTime(time.Now())
	if _, err := tx.ExecContext(ctx, `INSERT INTO projection_copies (name, version, role, seq, applied, from_seq, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6, '')`, r.name, version, roleShadow, int64(from-1), int64(from), now); err != nil {
		return 0, fmt.Errorf("rebuild %s: register copy %d: %w", r.name, version, err)
	}
	if err := r.p.Migrate(withCopy(ctx, version), tx); err != nil {
		return 0, fmt.Errorf("rebuild %s: migrate copy %d: %w", r.name, version, err)
	}
	if err := r.deferIndexes(ctx, tx, version); err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("rebuild %s: commit: %w", r.name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.newWorker(copyRow{Version: version, Role: roleShadow, Seq: from - 1, FromSeq: from})
	r.workers[version] = w
	r.startLocked(w)
	r.log.InfoContext(ctx, "projection rebuild started", "copy", version, "from_seq", from)
	return version, nil
}

// seqAt returns the sequence of the first event stored at or after t, or
// the sequence after the head when there is none.
func (r *Runner) seqAt(ctx context.Context, t time.Time) (uint64, error) {
	msgs, err := jetstreamext.GetBatch(ctx, r.js, r.stream, 1, jetstreamext.GetBatchStartTime(t))
	if err != nil {
		return 0, fmt.Errorf("find %s position at %s: %w", r.stream, t.Format(time.RFC3339), err)
	}
	var seq uint64
	for raw, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("find %s position at %s: %w", r.stream, t.Format(time.RFC3339), err)
		}
		if seq == 0 {
			seq = raw.Sequence
		}
	}
	if seq != 0 {
		return seq, nil
	}
	st, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq + 1, nil
}

// align holds a and b and lets the one behind catch up, so that both
// reflect the stream up to the same position, which it returns. The
// caller releases both (release). It fails if the one behind does not get
// there within alignTimeout, e.g. because it is paused or stopped at a
// failing event.
func (r *Runner) align(ctx context.Context, a, b *worker) (uint64, error) {
	if p, err := loadPause(ctx, r.db, r.name); err != nil {
		return 0, err
	} else if p.Paused {
		return 0, fmt.Errorf("%w: resume it first (copies cannot be brought to the same position)", ErrPaused)
	}
	at, bt := a.holdHere(), b.holdHere()
	target := max(at, bt)
	a.holdAt(target)
	b.holdAt(target)
	ctx, cancel := context.WithTimeout(ctx, alignTimeout)
	defer cancel()
	for _, w := range []*worker{a, b} {
		if err := r.waitPosition(ctx, " copy "+strconv.FormatInt(w.version, 10), w.position, target); err != nil {
			return 0, fmt.Errorf("align copies %d and %d at %d: %w", a.version, b.version, target, err)
		}
	}
	return target, nil
}

// SwapResult says what a swap did.
type SwapResult struct {
	// Live is the copy now live; Retired the copy it replaced (kept until
	// DropCopy).
	Live, Retired int64
	// Position is the stream position both copies reflected at the swap.
	Position uint64
}

// Swap makes the shadow copy live: it holds both copies at the same
// stream position, then in one transaction re-points the logical tables
// (views) at the shadow copy and records it as live. The old live copy is
// retired: kept, no longer fed, until DropCopy. The shadow copy must have
// caught up with the stream; the Runner must be running.
func (r *Runner) Swap(ctx context.Context) (SwapResult, error) {
	if !r.versioned {
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, ErrNotVersioned)
	}
	r.ops.Lock()
	defer r.ops.Unlock()
	if !r.Running() {
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, ErrNotRunning)
	}
	live, shadow := r.liveWorker(), r.shadowWorker()
	if shadow == nil {
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, ErrNoShadow)
	}
	if err := shadow.readyToCompare(); err != nil {
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, err)
	}
	pos, err := r.align(ctx, live, shadow)
	if err != nil {
		live.release()
		shadow.release()
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, err)
	}
	if err := r.flip(ctx, live.version, shadow.version); err != nil {
		live.release()
		shadow.release()
		return SwapResult{}, fmt.Errorf("swap %s: %w", r.name, err)
	}
	r.mu.Lock()
	live.setRole(roleRetired)
	shadow.setRole(roleLive)
	delete(r.workers, live.version)
	r.live = shadow
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.mu.Unlock()
	live.stopRunning()
	shadow.release()
	r.log.InfoContext(ctx, "projection swapped", "live", shadow.version, "retired", live.version, "position", pos)
	return SwapResult{Live: shadow.version, Retired: live.version, Position: pos}, nil
}

// flip records shadow as live and points the views at it, atomically.
func (r *Runner) flip(ctx context.Context, live, shadow int64) error {
	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer tx.Rollback()
	if err := r.db.dialect.lockMigrations(ctx, tx); err != nil {
		return err
	}
	var current int64
	if err := tx.QueryRowContext(ctx, `SELECT live_version FROM projection_state WHERE name = $1`, r.name).Scan(&current); err != nil {
		return err
	}
	if current != live {
		return fmt.Errorf("copy %d became live meanwhile (another process swapped)", current)
	}
	// Another process feeding the live copy may have moved it past the
	// position both were held at here; swapping now would show readers an
	// older read model than the one they just read.
	var liveSeq, shadowSeq int64
	q := `SELECT c.seq FROM projection_copies c WHERE c.name = $1 AND c.version = $2` + r.db.dialect.forUpdate("c")
	if err := tx.QueryRowContext(ctx, q, r.name, live).Scan(&liveSeq); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, q, r.name, shadow).Scan(&shadowSeq); err != nil {
		return err
	}
	if shadowSeq < liveSeq {
		return fmt.Errorf("%w: the live copy moved on to %d in another process (shadow at %d); swap again", ErrNotCaughtUp, liveSeq, shadowSeq)
	}
	now := formatTime(time.Now())
	for _, stmt := range []struct {
		q    string
		args []any
	}{
		{`UPDATE projection_copies SET role = $1 WHERE name = $2 AND version = $3`, []any{roleRetired, r.name, live}},
		{`UPDATE projection_copies SET role = $1 WHERE name = $2 AND version = $3`, []any{roleLive, r.name, shadow}},
		{`UPDATE projection_state SET live_version = $1, changed_at = $2 WHERE name = $3`, []any{shadow, now, r.name}},
	} {
		if _, err := tx.ExecContext(ctx, stmt.q, stmt.args...); err != nil {
			return err
		}
	}
	if err := r.pointViews(ctx, tx, shadow); err != nil {
		return err
	}
	return tx.Commit()
}

// DropCopy deletes a copy that is not live: a retired copy, or the shadow
// copy, which cancels its rebuild. Its tables go with it.
func (r *Runner) DropCopy(ctx context.Context, version int64) error {
	if !r.versioned {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, ErrNotVersioned)
	}
	r.ops.Lock()
	defer r.ops.Unlock()
	r.mu.Lock()
	w := r.workers[version]
	if w != nil && w == r.live {
		r.mu.Unlock()
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, ErrLiveCopy)
	}
	r.mu.Unlock()
	if w != nil {
		if err := w.stopAndWait(ctx); err != nil {
			return fmt.Errorf("drop %s copy %d: stop its rebuild: %w", r.name, version, err)
		}
	}
	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, err)
	}
	defer release()
	defer tx.Rollback()
	if err := r.db.dialect.lockMigrations(ctx, tx); err != nil {
		return err
	}
	var role string
	err = tx.QueryRowContext(ctx, `SELECT role FROM projection_copies WHERE name = $1 AND version = $2`, r.name, version).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, ErrNoCopy)
	}
	if err != nil {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, err)
	}
	if role == roleLive {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, ErrLiveCopy)
	}
	for _, t := range r.tables {
		if _, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS `+physical(t, version)); err != nil {
			return fmt.Errorf("drop %s copy %d: %w", r.name, version, err)
		}
	}
	for _, q := range []string{
		`DELETE FROM projection_skipped WHERE name = $1 AND version = $2`,
		`DELETE FROM projection_late_indexes WHERE name = $1 AND version = $2`,
		`DELETE FROM projection_copies WHERE name = $1 AND version = $2`,
	} {
		if _, err := tx.ExecContext(ctx, q, r.name, version); err != nil {
			return fmt.Errorf("drop %s copy %d: %w", r.name, version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("drop %s copy %d: %w", r.name, version, err)
	}
	r.mu.Lock()
	if r.workers[version] == w {
		delete(r.workers, version)
	}
	r.mu.Unlock()
	r.log.InfoContext(ctx, "projection copy dropped", "copy", version, "role", role)
	return nil
}

// readyToCompare fails unless the copy has caught up with the stream.
func (w *worker) readyToCompare() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.blockedSeq != 0:
		return fmt.Errorf("%w: copy %d is stopped at failing event %d", ErrNotCaughtUp, w.version, w.blockedSeq)
	case !w.caughtUp:
		return fmt.Errorf("%w: copy %d is still rebuilding (at %d)", ErrNotCaughtUp, w.version, w.checkpoint)
	}
	return nil
}

// RedriveResult says what a redrive did.
type RedriveResult struct {
	// Outcome is "applied" (the event was applied now) or
	// "already-applied" (the copy had moved past it, e.g. after a restart
	// with the fix).
	Outcome string
	Version int64
}

// Redrive applies an event the projection parked, once: seq is its stream
// sequence, version the copy that failed (0: the live copy). A copy
// stopped at the event retries it now (and the events after it, as
// usual); a skipped event is applied out of order in one transaction with
// the removal of its skip record. Either way it fails with
// ErrStillFailing, leaving things as they were, if the event fails again.
func (r *Runner) Redrive(ctx context.Context, version int64, seq uint64) (RedriveResult, error) {
	r.mu.Lock()
	w := r.live
	if version != 0 {
		w = r.workers[version]
	}
	r.mu.Unlock()
	if w != nil {
		version = w.version
	}
	if w != nil {
		w.mu.Lock()
		blocked := w.blockedSeq == seq && seq != 0 && w.running
		var req *redriveReq
		if blocked {
			req = &redriveReq{seq: seq, reply: make(chan error, 1)}
			w.redrive = req
		}
		w.mu.Unlock()
		if blocked {
			w.nudge()
			select {
			case err := <-req.reply:
				if err != nil {
					return RedriveResult{}, fmt.Errorf("redrive %s:%d into %s copy %d: %w", r.stream, seq, r.name, version, err)
				}
				r.log.InfoContext(ctx, "projection event redriven", "copy", version, "seq", seq)
				return RedriveResult{Outcome: "applied", Version: version}, nil
			case <-ctx.Done():
				return RedriveResult{}, fmt.Errorf("redrive %s:%d into %s copy %d: %w", r.stream, seq, r.name, version, ctx.Err())
			}
		}
	}
	applied, err := r.applySkipped(ctx, w, version, seq)
	if err != nil {
		return RedriveResult{}, err
	}
	if applied {
		r.log.InfoContext(ctx, "projection skipped event redriven", "copy", version, "seq", seq)
		return RedriveResult{Outcome: "applied", Version: version}, nil
	}
	var stored int64
	err = r.db.QueryRowContext(ctx, `SELECT seq FROM projection_copies WHERE name = $1 AND version = $2`, r.name, version).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return RedriveResult{}, fmt.Errorf("redrive %s:%d into %s: %w: %d", r.stream, seq, r.name, ErrNoCopy, version)
	}
	if err != nil {
		return RedriveResult{}, fmt.Errorf("redrive %s:%d into %s: %w", r.stream, seq, r.name, err)
	}
	if uint64(stored) >= seq {
		return RedriveResult{Outcome: "already-applied", Version: version}, nil
	}
	return RedriveResult{}, fmt.Errorf("redrive %s:%d into %s copy %d (at %d): %w", r.stream, seq, r.name, version, stored, ErrNotParked)
}

// applySkipped applies a skipped event and deletes its skip record in one
// transaction; false if the event is not recorded as skipped.
func (r *Runner) applySkipped(ctx context.Context, w *worker, version int64, seq uint64) (bool, error) {
	if w != nil {
		w.applyMu.Lock()
		defer w.applyMu.Unlock()
	}
	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	defer tx.Rollback()
	var stored int64
	err = tx.QueryRowContext(ctx, `SELECT c.seq FROM projection_copies c WHERE c.name = $1 AND c.version = $2`+r.db.dialect.forUpdate("c"),
		r.name, version).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redrive %s:%d: %w", r.stream, seq, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM projection_skipped WHERE name = $1 AND version = $2 AND seq = $3`, r.name, version, int64(seq))
	if err != nil {
		return false, fmt.Errorf("redrive %s:%d: %w", r.stream, seq, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	st, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return false, fmt.Errorf("redrive %s:%d: %w", r.stream, seq, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return false, fmt.Errorf("redrive %s:%d: %w", r.stream, seq, err)
	}
	ev, err := eventstore.FromMsg(r.stream, seq, raw.Subject, raw.Time, raw.Header, raw.Data)
	if err == nil {
		err = r.apply(withCopy(ctx, version), tx, ev)
	}
	if err != nil {
		return false, fmt.Errorf("redrive %s:%d into %s copy %d: %w: %v", r.stream, seq, r.name, version, ErrStillFailing, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("redrive %s:%d: commit: %w", r.stream, seq, err)
	}
	return true, nil
}

// streamHead returns the stream's last sequence.
func (r *Runner) streamHead(ctx context.Context) (uint64, error) {
	st, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq, nil
}
