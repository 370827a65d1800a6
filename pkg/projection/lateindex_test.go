package projection_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/projection"
)

// indexed is the counter with an index on subject that only readers use.
type indexed struct{ *counter }

var _ projection.LateIndexed = indexed{}

func (i indexed) Migrate(ctx context.Context, tx *sql.Tx) error {
	if err := i.counter.Migrate(ctx, tx); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+projection.Table(ctx, i.name+"_subject")+
		` ON `+projection.Table(ctx, i.name)+` (subject, seq)`)
	return err
}

func (i indexed) LateIndexes() []string { return []string{i.name + "_subject"} }

// indexDef returns how index name is defined ("" if it does not exist),
// with its copy's version suffixes cut out so that copies compare equal.
func indexDef(t testing.TB, db *projection.DB, name string) string {
	t.Helper()
	var def sql.NullString
	q := `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1`
	if db.Dialect() == "postgres" {
		q = `SELECT pg_get_indexdef(c.oid) FROM pg_class c WHERE c.oid = to_regclass($1)`
	}
	err := db.QueryRow(q, name).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"__v1", "__v2", "__v3"} {
		def.String = strings.ReplaceAll(def.String, v, "")
	}
	return def.String
}

// A rebuild leaves a LateIndexed projection's late indexes out of the
// shadow copy while it loads, also across a restart, and builds them, as
// the live copy has them, once the copy has caught up and before it can
// be swapped in.
func TestLateIndexesBuiltAfterTheRebuild(t *testing.T) {
	forEachStore(t, testLateIndexesBuiltAfterTheRebuild)
}

func testLateIndexesBuiltAfterTheRebuild(t *testing.T, s store) {
	js := startJetStream(t, true)
	open := s.fresh(t)
	db := open(t)
	last := preload(t, js, 500)
	p := indexed{newCounter("counts")}
	r := newRunner(t, db, js, p, projection.Options{})
	stop := start(t, r)
	waitFor(t, r, last)
	ctx := context.Background()
	want := indexDef(t, db, "counts_subject__v1")
	if want == "" {
		t.Fatal("the live copy has no index counts_subject__v1")
	}

	// Paused, the shadow stays empty: not caught up, its index left out.
	if err := r.Pause(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	v, err := r.Rebuild(ctx, projection.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := indexDef(t, db, "counts_subject__v2"); got != "" {
		t.Fatalf("the shadow copy has its late index while it loads: %s", got)
	}
	if _, err := r.Swap(ctx); !errors.Is(err, projection.ErrNotCaughtUp) {
		t.Fatalf("Swap of a shadow still loading = %v, want ErrNotCaughtUp", err)
	}

	// A restart runs Migrate again, which makes the index again: it is
	// left out again.
	stop()
	db = open(t)
	r = newRunner(t, db, js, p, projection.Options{})
	if got := indexDef(t, db, "counts_subject__v2"); got != "" {
		t.Fatalf("after a restart the loading shadow copy has its late index: %s", got)
	}
	start(t, r)
	if err := r.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	shadowCaughtUp(t, r)
	if diff := cmp.Diff(want, indexDef(t, db, "counts_subject__v2")); diff != "" {
		t.Fatalf("index of the caught-up shadow (-live +shadow):\n%s", diff)
	}
	if _, err := r.Swap(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(once(seqRange(1, last)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied after the swap (-want +got):\n%s", diff)
	}
	if st := status(t, r); st.Version != v {
		t.Errorf("live copy %d, want %d", st.Version, v)
	}
}
