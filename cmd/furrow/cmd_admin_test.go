package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// opStack is a running Furrow and a way to run the CLI against it.
type opStack struct {
	st          *stack.Stack
	ledger      ledgerv1.LedgerServiceClient
	procurement procurementv1.ProcurementServiceClient
}

func startOpStack(t *testing.T) *opStack {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &opStack{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn), procurement: procurementv1.NewProcurementServiceClient(conn)}
}

// cli runs `furrow args…` against the stack and returns its output and error.
func (s *opStack) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "FURROW_ADDR" {
			return s.st.GRPCAddr()
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, args, &out, &errOut, getenv)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return out.String() + errOut.String(), err
	}
	return out.String() + errOut.String(), nil
}

// mustCLI runs the CLI and fails the test if it fails.
func (s *opStack) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cli(t, args...)
	if err != nil {
		t.Fatalf("furrow %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *opStack) register(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-" + id, FarmerId: id, Name: "Farmer " + id, County: "Xunwu",
		Cooperative: "Xunwu Navel Orange Co-op", Phone: "13800000000", PayoutAccount: "6222-" + id,
	})
	if err != nil {
		t.Errorf("RegisterFarmer(%s): %v", id, err)
	}
}

// buy records an ad-hoc purchase of 100 kg from a registered farmer and
// corrects it to 98 kg of grade B (66,640 fen): a correction is the event
// whose Apply reads the purchases projection's own rows, so a rebuild that
// read the live copy instead would come out different. It returns the
// correction's position.
func (s *opStack) buy(t *testing.T, farmerID string) *typesv1.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := s.procurement.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
		RequestId: "buy-" + farmerID, FarmerId: farmerID, Product: "xunwu-navel-orange",
		NetGrams: 100_000, PriceFenPerKg: 680, Grade: "A", Warehouse: "WH-XUNWU",
	})
	if err != nil {
		t.Errorf("RecordDelivery(%s): %v", farmerID, err)
		return nil
	}
	fix, err := s.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{
		RequestId: "fix-" + farmerID, DeliveryId: rec.GetDeliveryId(), NetGrams: 98_000, Grade: "B",
		Reason: "crate tare of 2 kg not deducted",
	})
	if err != nil {
		t.Errorf("CorrectDelivery(%s): %v", farmerID, err)
		return nil
	}
	return fix.GetPosition()
}

func (s *opStack) projections(t *testing.T) []*adminv1.Projection {
	t.Helper()
	var res adminv1.ListProjectionsResponse
	if err := protojson.Unmarshal([]byte(s.mustCLI(t, "projections", "ls", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	return res.GetProjections()
}

// The acceptance test of rebuilds: every projection of the running stack
// is versioned and is rebuilt from zero through the CLI while commands
// keep arriving (farmer registrations, and ad-hoc purchases with their
// corrections); its shadow copy equals the live one (empty diff), the swap
// succeeds, the old copy is dropped, all projections end healthy, and
// readers get the same answers from the new copies.
func TestRebuildEveryProjectionWhileCommandsArrive(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	// The demo data set gives every service's projections rows to rebuild.
	conn, err := grpc.NewClient(s.st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := demo.Load(dctx, conn); err != nil {
		t.Fatalf("load the demo data set: %v", err)
	}
	var fixed *typesv1.Position // F-0003's correction
	for i := range 20 {
		s.register(t, fmt.Sprintf("F-%04d", i))
		if pos := s.buy(t, fmt.Sprintf("F-%04d", i)); i == 3 {
			fixed = pos
		}
	}
	// The demo programme's progress comes from procurement_purchases; this
	// test's purchases are ad-hoc, so it must read the same after the swap.
	pctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	progress, err := s.procurement.GetProgramProgress(pctx, &procurementv1.GetProgramProgressRequest{ProgramId: demo.ProgramID, MinPosition: fixed})
	if err != nil {
		t.Fatalf("GetProgramProgress(%s): %v", demo.ProgramID, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 20; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.register(t, fmt.Sprintf("F-%04d", i))
			s.buy(t, fmt.Sprintf("F-%04d", i))
		}
	})
	defer func() { close(stop); wg.Wait() }()

	rebuilt := 0
	for _, p := range s.projections(t) {
		if !p.GetVersioned() {
			t.Errorf("%s (%s) is not versioned: it cannot be rebuilt beside itself until it implements projection.Versioned", p.GetName(), p.GetService())
			continue
		}
		name, live := p.GetName(), p.GetVersion()
		out := s.mustCLI(t, "projections", "rebuild", name, "--every", "50ms")
		if !strings.Contains(out, "has caught up") {
			t.Errorf("rebuild %s:\n%s", name, out)
		}
		out = s.mustCLI(t, "projections", "diff", name, "--check")
		if !strings.Contains(out, "no differences") {
			t.Errorf("diff %s:\n%s", name, out)
		}
		t.Logf("furrow projections diff %s:\n%s", name, out)
		if p.GetCheckpoint() == 0 {
			t.Logf("%s has no rows to compare: the demo gave it no events", name)
		}
		out = s.mustCLI(t, "projections", "swap", name)
		if !strings.Contains(out, fmt.Sprintf("copy v%d is live", live+1)) {
			t.Errorf("swap %s:\n%s", name, out)
		}
		s.mustCLI(t, "projections", "drop", name, "--version", fmt.Sprint(live))
		rebuilt++
	}
	if rebuilt == 0 {
		t.Fatal("no projection could be rebuilt")
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	var status string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := s.cli(t, "projections", "status")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections unhealthy after the rebuilds: %v\n%s", err, out)
		}
		status = out
		time.Sleep(100 * time.Millisecond)
	}
	_ = status
	// The read models are served from the new copies.
	res, err := s.ledger.GetFarmer(context.Background(), &ledgerv1.GetFarmerRequest{FarmerId: "F-0003"})
	if err != nil || res.GetFarmer().GetName() != "Farmer F-0003" {
		t.Errorf("GetFarmer after the swap = %v, %v", res, err)
	}
	actx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	after, err := s.procurement.GetProgramProgress(actx, &procurementv1.GetProgramProgressRequest{ProgramId: demo.ProgramID})
	if err != nil {
		t.Fatalf("GetProgramProgress(%s) after the swap: %v", demo.ProgramID, err)
	}
	// as_of is the stream position read at, which moved on meanwhile.
	ignorePos := protocmp.IgnoreFields(&procurementv1.GetProgramProgressResponse{}, "as_of")
	if diff := cmp.Diff(progress, after, protocmp.Transform(), ignorePos); diff != "" {
		t.Errorf("programme progress changed by the rebuild (-before +after):\n%s", diff)
	}
	list, err := s.procurement.ListFarmerDeliveries(actx, &procurementv1.ListFarmerDeliveriesRequest{FarmerId: "F-0003"})
	if ds := list.GetDeliveries(); err != nil || len(ds) != 1 || ds[0].GetGrade() != "B" || ds[0].GetAmountFen() != 66_640 {
		t.Errorf("ListFarmerDeliveries(F-0003) after the swap = %v, %v; want the corrected delivery, grade B, 66640 fen", ds, err)
	}
}

// The operator commands against a running stack: readable output, JSON,
// exit status.
func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	s.register(t, "F-1001")
	s.register(t, "F-1002")

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"streams", "ls"}, []string{"STREAM", "LEDGER", "PROCUREMENT", "DEADLETTER"}},
		{[]string{"streams", "info", "LEDGER"}, []string{"Deny delete/purge:", "true/true", "ledger.farmer.F-1001.farmer_registered", "Consumers:"}},
		{[]string{"events", "list", "--aggregate", "F-1002"}, []string{"LEDGER:2", "furrow.ledger.events.v1.FarmerRegistered", `"farmer_id":"F-1002"`}},
		{[]string{"events", "get", "LEDGER:1"}, []string{"Type:", "FarmerRegistered (schema v1)", "Idempotency key:", "ledger.RegisterFarmer:reg-F-1001"}},
		{[]string{"events", "tail", "LEDGER", "--last", "2", "--limit", "2"}, []string{"LEDGER:1", "LEDGER:2"}},
		{[]string{"projections", "ls"}, []string{"ledger_balances", "idle", "LAG TIME"}},
		{[]string{"projections", "pause", "ledger_balances", "--reason", "checking a report"}, []string{"ledger_balances paused"}},
		{[]string{"projections", "resume", "ledger_balances"}, []string{"ledger_balances resumed"}},
		{[]string{"dlq", "ls"}, []string{"no dead letters"}},
		{[]string{"projections", "--help"}, []string{"rebuild", "diff", "swap", "pause", "resume"}},
		{[]string{"events", "tail", "-h"}, []string{"Usage: furrow events tail STREAM", "--last"}},
	} {
		out := s.mustCLI(t, tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("furrow %s: output lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}

	// Paused is unhealthy: status says so and exits non-zero.
	s.mustCLI(t, "projections", "pause", "ledger_balances", "--reason", "checking a report")
	out, err := s.cli(t, "projections", "status", "ledger_balances")
	if !errors.Is(err, errUnhealthy) || !strings.Contains(out, "paused") || !strings.Contains(out, "checking a report") {
		t.Errorf("status of a paused projection: %v\n%s", err, out)
	}
	s.mustCLI(t, "projections", "resume", "ledger_balances")

	var ev adminv1.GetEventResponse
	if err := protojson.Unmarshal([]byte(s.mustCLI(t, "events", "get", "LEDGER", "2", "--json")), &ev); err != nil || ev.GetEvent().GetSubject() != "ledger.farmer.F-1002.farmer_registered" {
		t.Errorf("events get --json = %v, %v", ev.GetEvent(), err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"projections", "status", "nope"}, "NotFound"},
		{[]string{"projections", "rebuild", "procurement_farmers_nope"}, "NotFound"},
		{[]string{"events", "get", "LEDGER", "999"}, "NotFound"},
		{[]string{"events", "get", "LEDGER", "x"}, "want a positive stream sequence"},
		{[]string{"dlq", "redrive", "7"}, "NotFound"},
		{[]string{"projections", "swap", "ledger_balances"}, "FailedPrecondition"},
		{[]string{"projections"}, "no command given"},
		{[]string{"projections", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"streams", "info"}, "want STREAM"},
	} {
		out, err := s.cli(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("furrow %s = %v, want an error with %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	// An unreachable server is named.
	var out2, errOut bytes.Buffer
	err = run(context.Background(), []string{"projections", "ls", "--addr", "127.0.0.1:1", "--timeout", "2s"}, &out2, &errOut, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "cannot reach Furrow at 127.0.0.1:1") {
		t.Errorf("unreachable server: %v", err)
	}
}
