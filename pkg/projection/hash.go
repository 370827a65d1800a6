package projection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// ContentHash is a SHA-256 digest of the live copy's content: each of the
// projection's tables by name, its column names and its rows, rows in a
// canonical (sorted) order. Two databases that applied the same events
// have the same hash whatever order the rows were written in, so it
// compares read models across databases (a restore drill: the original
// against one rebuilt from a restored stream). Checkpoints and copy
// bookkeeping are not part of it.
func (r *Runner) ContentHash(ctx context.Context) (string, error) {
	tx, err := r.db.BeginTx(ctx, r.db.dialect.snapshot())
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", r.name, err)
	}
	defer tx.Rollback()
	h := sha256.New()
	tables := slices.Clone(r.tables)
	slices.Sort(tables)
	for _, t := range tables {
		// The plain name is the live copy's view (see Table).
		rows, err := readTable(ctx, tx, t, nil)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", r.name, err)
		}
		lines := make([]string, len(rows.rows))
		for i, row := range rows.rows {
			lines[i] = strings.Join(row, "\x1f")
		}
		slices.Sort(lines)
		fmt.Fprintf(h, "table %s\x1e%s\x1e%d\x1e", t, strings.Join(rows.cols, "\x1f"), len(lines))
		for _, l := range lines {
			fmt.Fprintf(h, "%s\x1e", l)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
