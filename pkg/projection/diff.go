package projection

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultDiffSamples is how many differing rows a table diff shows.
const DefaultDiffSamples = 20

// DiffOptions choose what Diff compares.
type DiffOptions struct {
	// Version is the copy compared with the live one; 0 means the shadow.
	Version int64
	// Samples bounds the differing rows reported per table (the counts
	// are always complete); default DefaultDiffSamples.
	Samples int
}

// Diff is the row-by-row difference between the live copy and another.
// "Added" rows are in the other copy only, "removed" ones in the live copy
// only, "changed" ones in both under the same primary key with different
// values: what swapping would do to readers.
type Diff struct {
	Projection string
	Live       int64
	Other      int64
	// LiveCheckpoint and OtherCheckpoint are the copies' checkpoints in
	// the snapshot the diff read.
	LiveCheckpoint  uint64
	OtherCheckpoint uint64
	// Aligned reports that both copies were held at Position, the same
	// stream position, while the diff read them. A diff of copies that are
	// not aligned (a retired copy, a stopped runner) also shows the events
	// one applied and the other did not.
	Aligned  bool
	Position uint64
	Tables   []TableDiff
}

// TableDiff compares one logical table.
type TableDiff struct {
	Table string
	// Key is the primary key the rows were matched on; all columns when
	// the table has none.
	Key                 []string
	LiveRows, OtherRows int
	Added               int
	Removed             int
	Changed             int
	// Columns only one copy has; rows are compared on the common ones.
	ColumnsAdded   []string
	ColumnsRemoved []string
	// Samples are up to DiffOptions.Samples differing rows, in key order.
	Samples []RowDiff
}

// RowDiff is one differing row.
type RowDiff struct {
	// Kind is "added", "removed" or "changed".
	Kind string
	// Key holds the key columns' values.
	Key []string
	// Columns are the columns whose values differ (changed rows).
	Columns []string
	// Live and Other are the row in each copy (nil where absent), column
	// name to value, NULL as "NULL".
	Live, Other map[string]string
}

// Empty reports whether the copies hold the same rows.
func (d Diff) Empty() bool {
	for _, t := range d.Tables {
		if t.Added+t.Removed+t.Changed > 0 || len(t.ColumnsAdded)+len(t.ColumnsRemoved) > 0 {
			return false
		}
	}
	return true
}

// Summary is one line for people: what differs, in numbers.
func (d Diff) Summary() string {
	var rows, added, removed, changed int
	for _, t := range d.Tables {
		rows += max(t.LiveRows, t.OtherRows)
		added += t.Added
		removed += t.Removed
		changed += t.Changed
	}
	at := fmt.Sprintf("live v%d at %d, v%d at %d", d.Live, d.LiveCheckpoint, d.Other, d.OtherCheckpoint)
	if d.Aligned {
		at = fmt.Sprintf("v%d and v%d both at stream position %d", d.Live, d.Other, d.Position)
	}
	if d.Empty() {
		return fmt.Sprintf("%s: no differences in %d tables, %d rows (%s)", d.Projection, len(d.Tables), rows, at)
	}
	return fmt.Sprintf("%s: %d added, %d removed, %d changed rows in %d tables (%s)",
		d.Projection, added, removed, changed, len(d.Tables), at)
}

// Diff compares the live copy with the shadow copy (or opts.Version). When
// both are fed by this running Runner it first holds them at the same
// stream position (the live copy keeps serving reads meanwhile), and reads
// both in one snapshot.
func (r *Runner) Diff(ctx context.Context, opts DiffOptions) (Diff, error) {
	if !r.versioned {
		return Diff{}, fmt.Errorf("diff %s: %w", r.name, ErrNotVersioned)
	}
	if opts.Samples <= 0 {
		opts.Samples = DefaultDiffSamples
	}
	r.ops.Lock()
	defer r.ops.Unlock()
	r.mu.Lock()
	live := r.live
	var other *worker
	if opts.Version == 0 {
		for _, w := range r.workers {
			if w != live && w.getRole() == roleShadow {
				other = w
			}
		}
	} else {
		other = r.workers[opts.Version]
	}
	r.mu.Unlock()

	d := Diff{Projection: r.name, Live: live.version, Other: opts.Version}
	if other != nil {
		d.Other = other.version
	}
	if d.Other == 0 {
		copies, err := loadCopies(ctx, r.db, r.name)
		if err != nil {
			return Diff{}, err
		}
		for _, c := range copies {
			if c.Role == roleShadow {
				d.Other = c.Version
			}
		}
		if d.Other == 0 {
			return Diff{}, fmt.Errorf("diff %s: %w", r.name, ErrNoShadow)
		}
	}
	if d.Other == d.Live {
		return Diff{}, fmt.Errorf("diff %s: %w: compare it with another copy", r.name, ErrLiveCopy)
	}
	if other != nil && other.isRunning() && live.isRunning() {
		if err := other.readyToCompare(); err != nil {
			return Diff{}, fmt.Errorf("diff %s: %w", r.name, err)
		}
		pos, err := r.align(ctx, live, other)
		defer live.release()
		defer other.release()
		if err != nil {
			return Diff{}, fmt.Errorf("diff %s: %w", r.name, err)
		}
		d.Aligned, d.Position = true, pos
	}

	tx, err := r.db.BeginTx(ctx, r.db.dialect.snapshot())
	if err != nil {
		return Diff{}, fmt.Errorf("diff %s: %w", r.name, err)
	}
	defer tx.Rollback()
	found := 0
	copies, err := loadCopies(ctx, tx, r.name)
	if err != nil {
		return Diff{}, err
	}
	for _, c := range copies {
		switch c.Version {
		case d.Live:
			d.LiveCheckpoint = c.Seq
			found++
		case d.Other:
			d.OtherCheckpoint = c.Seq
			found++
		}
	}
	if found != 2 {
		return Diff{}, fmt.Errorf("diff %s: %w: v%d or v%d", r.name, ErrNoCopy, d.Live, d.Other)
	}
	for _, t := range r.tables {
		td, err := r.diffTable(ctx, tx, t, d.Live, d.Other, opts.Samples)
		if err != nil {
			return Diff{}, fmt.Errorf("diff %s: %w", r.name, err)
		}
		d.Tables = append(d.Tables, td)
	}
	return d, nil
}

// tableRows is a table read whole: its columns and rows as text.
type tableRows struct {
	cols []string
	rows [][]string
}

func readTable(ctx context.Context, q querier, table string, order []string) (tableRows, error) {
	query := `SELECT * FROM ` + table
	if len(order) > 0 {
		query += ` ORDER BY ` + strings.Join(order, ", ")
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return tableRows{}, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return tableRows{}, fmt.Errorf("read %s: %w", table, err)
	}
	out := tableRows{cols: cols}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return tableRows{}, fmt.Errorf("read %s: %w", table, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = text(v)
		}
		out.rows = append(out.rows, row)
	}
	if err := rows.Err(); err != nil {
		return tableRows{}, fmt.Errorf("read %s: %w", table, err)
	}
	return out, nil
}

// text renders a scanned value the same way whichever driver produced it.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return string(v)
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(v)
	}
}

func (r *Runner) diffTable(ctx context.Context, tx *sql.Tx, table string, liveV, otherV int64, samples int) (TableDiff, error) {
	td := TableDiff{Table: table}
	liveT, otherT := physical(table, liveV), physical(table, otherV)
	key, err := r.db.dialect.primaryKey(ctx, tx, otherT)
	if err != nil {
		return td, err
	}
	live, err := readTable(ctx, tx, liveT, key)
	if err != nil {
		return td, err
	}
	other, err := readTable(ctx, tx, otherT, key)
	if err != nil {
		return td, err
	}
	td.LiveRows, td.OtherRows = len(live.rows), len(other.rows)
	if len(key) == 0 {
		key = slices.Clone(other.cols)
	}
	td.Key = key
	// Compare on the columns both copies have.
	var common []string
	for _, c := range other.cols {
		if slices.Contains(live.cols, c) {
			common = append(common, c)
		} else {
			td.ColumnsAdded = append(td.ColumnsAdded, c)
		}
	}
	for _, c := range live.cols {
		if !slices.Contains(other.cols, c) {
			td.ColumnsRemoved = append(td.ColumnsRemoved, c)
		}
	}
	for _, k := range key {
		if !slices.Contains(common, k) {
			return td, fmt.Errorf("table %s: key column %s is not in both copies", table, k)
		}
	}
	liveIdx, otherIdx := columnIndex(live.cols), columnIndex(other.cols)
	keyOf := func(row []string, idx map[string]int) (string, []string) {
		vals := make([]string, len(key))
		for i, k := range key {
			vals[i] = row[idx[k]]
		}
		return strings.Join(vals, "\x00"), vals
	}
	asMap := func(row []string, cols []string) map[string]string {
		m := make(map[string]string, len(cols))
		for i, c := range cols {
			m[c] = row[i]
		}
		return m
	}
	// Rows of the live copy by key; a list per key covers tables without
	// a primary key, where equal rows may repeat.
	byKey := make(map[string][][]string, len(live.rows))
	for _, row := range live.rows {
		k, _ := keyOf(row, liveIdx)
		byKey[k] = append(byKey[k], row)
	}
	var diffs []RowDiff
	note := func(rd RowDiff) {
		if len(diffs) < 10*samples { // enough to pick the first in key order
			diffs = append(diffs, rd)
		}
	}
	for _, row := range other.rows {
		k, kv := keyOf(row, otherIdx)
		candidates := byKey[k]
		if len(candidates) == 0 {
			td.Added++
			note(RowDiff{Kind: "added", Key: kv, Other: asMap(row, other.cols)})
			continue
		}
		lrow := candidates[0]
		byKey[k] = candidates[1:]
		var changed []string
		for _, c := range common {
			if lrow[liveIdx[c]] != row[otherIdx[c]] {
				changed = append(changed, c)
			}
		}
		if len(changed) > 0 {
			td.Changed++
			note(RowDiff{Kind: "changed", Key: kv, Columns: changed, Live: asMap(lrow, live.cols), Other: asMap(row, other.cols)})
		}
	}
	for _, rest := range byKey {
		for _, lrow := range rest {
			td.Removed++
			_, kv := keyOf(lrow, liveIdx)
			note(RowDiff{Kind: "removed", Key: kv, Live: asMap(lrow, live.cols)})
		}
	}
	slices.SortFunc(diffs, func(a, b RowDiff) int { return compareKeys(a.Key, b.Key) })
	td.Samples = diffs[:min(len(diffs), samples)]
	return td, nil
}

// compareKeys orders keys column by column, numerically where both
// values are integers, so that samples come in the order people expect.
func compareKeys(a, b []string) int {
	for i := range min(len(a), len(b)) {
		x, errX := strconv.ParseInt(a[i], 10, 64)
		y, errY := strconv.ParseInt(b[i], 10, 64)
		var c int
		if errX == nil && errY == nil {
			c = cmpInt(x, y)
		} else {
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func columnIndex(cols []string) map[string]int {
	m := make(map[string]int, len(cols))
	for i, c := range cols {
		m[c] = i
	}
	return m
}
