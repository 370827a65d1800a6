// Package projectiontest gives tests real read-model databases: a fresh
// SQLite file, or a fresh schema in the PostgreSQL server `make test` starts
// (scripts/postgres.sh), so one contract runs against both stores.
package projectiontest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/furrow/furrow/pkg/projection"
)

// PostgresEnv names the DSN of the test PostgreSQL server; `make test`
// sets it.
const PostgresEnv = "FURROW_TEST_POSTGRES_DSN"

// PostgresSchemaDSN creates a schema of the test's own, dropped when the
// test ends, and returns a DSN whose search_path puts everything there, so
// tests run in parallel and leave nothing behind. Without PostgresEnv it
// skips the test, except under CI=true, where the PostgreSQL half must run
// and its absence fails the test. what names the skipped part in messages.
func PostgresSchemaDSN(t testing.TB, what string) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %s is not set; under CI %s must run (make test sets it)", PostgresEnv, what)
		}
		t.Skipf("PostgreSQL: %s is not set; skipping %s (make test starts a server and sets it)", PostgresEnv, what)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "furrow_test_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base) // the driver pkg/projection registers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.ExecContext(context.Background(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("PostgreSQL at %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// ForEachStore runs test in parallel subtests against a fresh SQLite
// database and a fresh PostgreSQL schema: read-model SQL must mean the same
// on both.
func ForEachStore(t *testing.T, test func(t *testing.T, db *projection.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db, err := projection.OpenSQLite(filepath.Join(t.TempDir(), "read.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		test(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := PostgresSchemaDSN(t, "the PostgreSQL half of this contract")
		db, err := projection.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		test(t, db)
	})
}
