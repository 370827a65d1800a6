package projection_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/projection"
)

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	// The parent directories do not exist yet.
	db, err := projection.OpenSQLite(filepath.Join(t.TempDir(), "data", "projections", "read.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	type pragmas struct {
		JournalMode string
		Synchronous int
		BusyTimeout int
		ForeignKeys int
	}
	var got pragmas
	for _, p := range []struct {
		name string
		dst  any
	}{
		{"journal_mode", &got.JournalMode},
		{"synchronous", &got.Synchronous},
		{"busy_timeout", &got.BusyTimeout},
		{"foreign_keys", &got.ForeignKeys},
	} {
		if err := db.QueryRow("PRAGMA " + p.name).Scan(p.dst); err != nil {
			t.Fatalf("PRAGMA %s: %v", p.name, err)
		}
	}
	want := pragmas{JournalMode: "wal", Synchronous: 1, BusyTimeout: 10000, ForeignKeys: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pragmas (-want +got):\n%s", diff)
	}

	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if _, err := projection.OpenSQLite(path); !errors.Is(err, projection.ErrInvalidConfig) {
			t.Errorf("OpenSQLite(%q) error = %v, want ErrInvalidConfig", path, err)
		}
	}
}
