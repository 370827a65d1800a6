package projection_test

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

// twoTables keeps a count per subject in two tables, each with an index,
// and writes them in the other order than it creates them: what makes a
// migration and a batch take their locks in opposite orders.
type twoTables struct{}

func (twoTables) Name() string       { return "two_tables" }
func (twoTables) Stream() string     { return testStream }
func (twoTables) Subjects() []string { return nil }
func (twoTables) Tables() []string   { return []string{"tt_a", "tt_b"} }

func (twoTables) Migrate(ctx context.Context, tx *sql.Tx) error {
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + projection.Table(ctx, "tt_a") + ` (subject TEXT PRIMARY KEY, n BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + projection.Table(ctx, "tt_a_n") + ` ON ` + projection.Table(ctx, "tt_a") + ` (n)`,
		`CREATE TABLE IF NOT EXISTS ` + projection.Table(ctx, "tt_b") + ` (subject TEXT PRIMARY KEY, n BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + projection.Table(ctx, "tt_b_n") + ` ON ` + projection.Table(ctx, "tt_b") + ` (n)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

func (twoTables) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	for _, table := range []string{"tt_b", "tt_a"} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, table)+` (subject, n) VALUES ($1, 1)
			ON CONFLICT (subject) DO UPDATE SET n = `+projection.Table(ctx, table)+`.n + 1`, ev.Subject); err != nil {
			return err
		}
	}
	return nil
}

// TestReplicaStartsBesideARunningOne: replicas of a service that start
// while another runs the same projection on the same PostgreSQL schema
// all start. Each start migrates (CREATE … IF NOT EXISTS, the views) while
// the running one applies batches; PostgreSQL may abort one transaction
// of such a pair as a deadlock, and when that was the migration the
// replica exited at start (TestFaultsWithOracle saw "migrate brand_premiums:
// ERROR: deadlock detected (SQLSTATE 40P01)" when a replica restarted).
func TestReplicaStartsBesideARunningOne(t *testing.T) {
	if os.Getenv(postgresEnv) == "" {
		t.Skip("needs PostgreSQL (" + postgresEnv + ")")
	}
	t.Parallel()
	open := postgresStore.fresh(t)
	js := startJetStream(t, true)
	running := newRunner(t, open(t), js, twoTables{}, projection.Options{BatchSize: 5})
	start(t, running)
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			appendEvents(t, js, "test.a.1", "test.a.2", "test.a.3")
		}
	})
	var starts sync.WaitGroup
	errs := make(chan error, 64)
	for range 2 {
		for range 6 {
			starts.Go(func() {
				if _, err := projection.NewRunner(open(t), js, twoTables{}, projection.Options{Logger: testLogger(t)}); err != nil {
					errs <- err
				}
			})
		}
		starts.Wait()
	}
	close(stop)
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a replica did not start beside the running one: %v", err)
	}
}
