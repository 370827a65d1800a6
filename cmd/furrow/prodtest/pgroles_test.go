package prodtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/natstest"
)

// pgRoles are the roles of deploy/postgres/roles.sql by service, with the
// test's passwords (the variables the script reads).
var pgRoles = []struct{ service, role, password string }{
	{"procurement", "procurement", "pw-pg-procurement"},
	{"brand-incubation", "brand", "pw-pg-brand"},
	{"farmer-ledger", "ledger", "pw-pg-ledger"},
}

// TestPostgresRolesLeastPrivilege runs deploy/postgres/roles.sql (as the
// postgres image does) on a fresh database and the three services each as
// its own role, as docker-compose.yml does: they start, build their read
// models and serve a delivery posted to a farmer's balance; every table
// lands in the service's own schema, none in public; and no role can read
// another's tables (procurement cannot read the ledger's) or create
// anything in public.
//
// Roles are global to the PostgreSQL server: the test drops them at the
// end, so two runs of it must not share a server at the same time.
func TestPostgresRolesLeastPrivilege(t *testing.T) {
	needs(t)
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not found: it runs deploy/postgres/roles.sql (as the postgres image does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	base, err := url.Parse(os.Getenv(postgresEnv))
	if err != nil {
		t.Fatal(err)
	}
	super, err := sql.Open("pgx", base.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { super.Close() }) // after the drops below (cleanups run last first)
	var b [6]byte
	_, _ = rand.Read(b[:])
	dbName := "furrow_roles_" + hex.EncodeToString(b[:])
	if _, err := super.ExecContext(ctx, "CREATE DATABASE "+dbName); err != nil {
		t.Fatal(err)
	}
	dsnAs := func(user, password string) string {
		u := *base
		u.Path = "/" + dbName
		if user != "" {
			u.User = url.UserPassword(user, password)
		}
		return u.String()
	}
	t.Cleanup(func() {
		// Drop the database first: the roles own its schemas.
		if _, err := super.Exec("DROP DATABASE " + dbName + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", dbName, err)
		}
		for _, r := range pgRoles {
			if _, err := super.Exec("DROP ROLE IF EXISTS " + r.role); err != nil {
				t.Logf("drop role %s: %v", r.role, err)
			}
		}
	})

	script := filepath.Join(deployDir, "postgres", "roles.sql")
	cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", dsnAs("", ""), "-f", script)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	for _, r := range pgRoles {
		cmd.Env = append(cmd.Env, "POSTGRES_"+strings.ToUpper(r.role)+"_PASSWORD="+r.password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql -f %s: %v\n%s", script, err, out)
	}

	srv := natstest.Standalone(t)
	provisionLog(ctx, t, srv.JetStream(t), 1)
	common := []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--allow-few-replicas", "--stream-replicas", "1", "--nats-url", srv.URLs[0]}
	procs := map[string]*proc{}
	for _, r := range pgRoles {
		args := common
		if r.service == "farmer-ledger" {
			args = append(slices.Clone(common), "--payment-provider", "simulated", "--allow-simulated-provider", "--allow-dev-pii-key")
		}
		procs[r.service] = start(t, r.service, binaries[r.service], []string{"FURROW_POSTGRES_DSN=" + dsnAs(r.role, r.password)}, args...)
	}

	// The services work within their roles: a delivery reaches the balance.
	ledger := ledgerv1.NewLedgerServiceClient(procs["farmer-ledger"].dial(t))
	if _, err := ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-F1", FarmerId: "F1", Name: "Wang Fang", County: "Xunwu",
	}); err != nil {
		t.Fatal(err)
	}
	rec, err := procurementv1.NewProcurementServiceClient(procs["procurement"].dial(t)).RecordDelivery(ctx,
		&procurementv1.RecordDeliveryRequest{RequestId: "wh7-1", FarmerId: "F1", Product: "xunwu-navel-orange",
			Grade: "A", NetGrams: 12345, PriceFenPerKg: 680})
	if err != nil {
		t.Fatal(err)
	}
	bal, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: rec.GetPosition()})
	if err != nil || bal.GetAvailableFen() != 8395 {
		t.Fatalf("GetFarmerBalance = %v, %v; want 8395 fen available", bal, err)
	}

	// Where the tables are.
	db, err := sql.Open("pgx", dsnAs("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := map[string][]string{}
	rows, err := db.QueryContext(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			t.Fatal(err)
		}
		tables[schema] = append(tables[schema], table)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range pgRoles {
		if len(tables[r.role]) == 0 {
			t.Errorf("schema %s holds no table: %s's read models went elsewhere (%v)", r.role, r.service, tables)
		}
	}
	if len(tables["public"]) != 0 {
		t.Errorf("tables in public: %v", tables["public"])
	}

	// Every role against every other schema's tables, and public.
	for _, r := range pgRoles {
		as, err := sql.Open("pgx", dsnAs(r.role, r.password))
		if err != nil {
			t.Fatal(err)
		}
		defer as.Close()
		for _, other := range pgRoles {
			if other.role == r.role {
				continue
			}
			for _, table := range tables[other.role] {
				q := `SELECT 1 FROM ` + other.role + `.` + table + ` LIMIT 1`
				if _, err := as.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "permission denied for schema "+other.role) {
					t.Errorf("as %s: %s: %v; want permission denied for schema %s", r.role, q, err, other.role)
				}
			}
		}
		if _, err := as.ExecContext(ctx, `CREATE TABLE public.intruder (x int)`); err == nil || !strings.Contains(err.Error(), "permission denied for schema public") {
			t.Errorf("as %s: CREATE TABLE public.intruder: %v; want permission denied for schema public", r.role, err)
		}
	}
	t.Logf("tables by schema: %v", tables)
}
