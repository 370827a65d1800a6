package console

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/ledgerfmt"
)

type farmersData struct {
	County  string
	Farmers []*ledgerv1.Farmer
	Next    string
}

func (c *Console) farmers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	q := r.URL.Query()
	res, err := c.c.ledger.ListFarmers(ctx, &ledgerv1.ListFarmersRequest{County: q.Get("county"), PageSize: 100, PageToken: q.Get("page")})
	c.render(w, r, "farmers", "Farmers", "farmers", farmersData{County: q.Get("county"), Farmers: res.GetFarmers(), Next: res.GetNextPageToken()}, err)
}

type farmerData struct {
	Farmer     *ledgerv1.Farmer
	Balance    *ledgerv1.GetFarmerBalanceResponse
	From, To   string
	Statement  *ledgerv1.GetFarmerStatementResponse
	Deliveries []*procurementv1.Delivery
	Premiums   []*brandv1.FarmerPremium
	Payouts    []*ledgerv1.Payout
	CSVQuery   string
}

func (c *Console) farmer(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	id := r.PathValue("id")
	q := r.URL.Query()
	d := farmerData{From: q.Get("from"), To: q.Get("to")}
	d.CSVQuery = url.Values{"from": {d.From}, "to": {d.To}}.Encode()
	var errs []error
	f, err := c.c.ledger.GetFarmer(ctx, &ledgerv1.GetFarmerRequest{FarmerId: id})
	errs = append(errs, err)
	d.Farmer = f.GetFarmer()
	d.Balance, err = c.c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: id})
	errs = append(errs, err)
	req, err := statementRequest(id, d.From, d.To)
	errs = append(errs, err)
	if err == nil {
		d.Statement, err = c.c.ledger.GetFarmerStatement(ctx, req)
		errs = append(errs, err)
	}
	del, err := c.c.proc.ListFarmerDeliveries(ctx, &procurementv1.ListFarmerDeliveriesRequest{FarmerId: id, PageSize: 50})
	errs = append(errs, err)
	d.Deliveries = del.GetDeliveries()
	pr, err := c.c.brand.ListFarmerPremiums(ctx, &brandv1.ListFarmerPremiumsRequest{FarmerId: id, PageSize: 200})
	errs = append(errs, err)
	d.Premiums = pr.GetPremiums()
	po, err := c.c.ledger.ListPayouts(ctx, &ledgerv1.ListPayoutsRequest{FarmerId: id, PageSize: 100})
	errs = append(errs, err)
	d.Payouts = po.GetPayouts()
	title := "Farmer " + id
	if d.Farmer != nil {
		title = d.Farmer.GetName() + " (" + id + ")"
	}
	c.render(w, r, "farmer", title, "farmers", d, errs...)
}

// statementRequest reads a period of days as the CLI does: YYYY-MM-DD is
// midnight UTC at the start of that day, to is exclusive.
func statementRequest(id, from, to string) (*ledgerv1.GetFarmerStatementRequest, error) {
	req := &ledgerv1.GetFarmerStatementRequest{FarmerId: id}
	for _, p := range []struct {
		name, v string
		dst     **timestamppb.Timestamp
	}{{"from", from, &req.From}, {"to", to, &req.To}} {
		if p.v == "" {
			continue
		}
		t, err := time.Parse("2006-01-02", p.v)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s %q: want YYYY-MM-DD", p.name, p.v)
		}
		*p.dst = timestamppb.New(t)
	}
	return req, nil
}

// statementCSV downloads the statement with the columns of `furrow ledger
// statement --csv` (amounts in fen).
func (c *Console) statementCSV(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	id := r.PathValue("id")
	req, err := statementRequest(id, r.URL.Query().Get("from"), r.URL.Query().Get("to"))
	var st *ledgerv1.GetFarmerStatementResponse
	if err == nil {
		st, err = c.c.ledger.GetFarmerStatement(ctx, req)
	}
	if err != nil {
		http.Error(w, errText(err), httpStatus(err))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="statement-`+url.PathEscape(id)+`.csv"`)
	_ = ledgerfmt.StatementCSV(w, st) // headers are sent: a failed write cannot be reported
}

func httpStatus(err error) int {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusBadGateway
}

type financeData struct {
	ByFarmer bool
	Trial    *ledgerv1.GetTrialBalanceResponse
	Recent   []reconSummary
}

type reconSummary struct {
	Token, Name string
	At          time.Time
	Open        int32
}

func (c *Console) finance(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	d := financeData{ByFarmer: r.URL.Query().Get("by_farmer") == "1"}
	var err error
	d.Trial, err = c.c.ledger.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{ByFarmer: d.ByFarmer})
	if err != nil {
		// DATA_LOSS carries the totals as a detail: show them anyway.
		for _, det := range status.Convert(err).Details() {
			if tb, ok := det.(*ledgerv1.GetTrialBalanceResponse); ok {
				d.Trial = tb
			}
		}
	}
	c.mu.Lock()
	for i := len(c.reconsQ) - 1; i >= 0; i-- {
		run := c.recons[c.reconsQ[i]]
		d.Recent = append(d.Recent, reconSummary{Token: c.reconsQ[i], Name: run.Name, At: run.At, Open: run.Result.GetTotals().GetOpenBreaks()})
	}
	c.mu.Unlock()
	c.render(w, r, "finance", "Finance", "finance", d, err)
}

// reconRun is an uploaded settlement file and its latest reconciliation.
// The console keeps the last few in memory so that finance can resolve
// breaks and rerun without uploading again.
type reconRun struct {
	Name     string
	CSV      []byte
	From, To string
	At       time.Time
	Result   *ledgerv1.ReconcilePayoutsResponse
}

// maxRecons is how many uploaded files the console keeps.
const maxRecons = 20

// maxSettlementBytes bounds an uploaded settlement file.
const maxSettlementBytes = 16 << 20

type reconData struct {
	Token  string
	Run    *reconRun
	Totals []*ledgerv1.ResultTotal
	Breaks []*ledgerv1.ReconciliationItem
	Match  []*ledgerv1.ReconciliationItem
	// Decisions are the choices of the resolve form.
	Decisions []ledgerv1.BreakDecision
}

func (c *Console) reconcileUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSettlementBytes+1<<20)
	f, hdr, err := r.FormFile("settlement")
	if err != nil {
		redirect(w, r, "/finance", "Choose a settlement CSV file to upload ("+err.Error()+")")
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSettlementBytes+1))
	if err != nil || len(b) > maxSettlementBytes {
		redirect(w, r, "/finance", "The settlement file is too large (at most 16 MiB)")
		return
	}
	run := &reconRun{Name: hdr.Filename, CSV: b, From: r.FormValue("from"), To: r.FormValue("to")}
	if err := c.runRecon(r, run); err != nil {
		redirect(w, r, "/finance", errText(err))
		return
	}
	tok := c.keepRecon(run)
	redirect(w, r, "/finance/reconciliations/"+tok, "")
}

func (c *Console) runRecon(r *http.Request, run *reconRun) error {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	req := &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: run.CSV}
	for _, p := range []struct {
		v   string
		dst **timestamppb.Timestamp
	}{{run.From, &req.From}, {run.To, &req.To}} {
		if p.v == "" {
			continue
		}
		t, err := time.Parse("2006-01-02", p.v)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "date %q: want YYYY-MM-DD", p.v)
		}
		*p.dst = timestamppb.New(t)
	}
	res, err := c.c.ledger.ReconcilePayouts(c.actorCtx(ctx), req)
	if err != nil {
		return err
	}
	c.mu.Lock()
	run.Result, run.At = res, time.Now()
	c.mu.Unlock()
	return nil
}

func (c *Console) keepRecon(run *reconRun) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recons[tok] = run
	c.reconsQ = append(c.reconsQ, tok)
	if len(c.reconsQ) > maxRecons {
		delete(c.recons, c.reconsQ[0])
		c.reconsQ = c.reconsQ[1:]
	}
	return tok
}

func (c *Console) recon(tok string) *reconRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recons[tok]
}

func (c *Console) reconciliation(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	run := c.recon(tok)
	if run == nil {
		redirect(w, r, "/finance", "That reconciliation is no longer kept: upload the file again")
		return
	}
	c.mu.Lock()
	res := run.Result
	c.mu.Unlock()
	d := reconData{Token: tok, Run: run, Totals: res.GetTotals().GetByResult(),
		Decisions: []ledgerv1.BreakDecision{ledgerv1.BreakDecision_BREAK_DECISION_ACCEPTED, ledgerv1.BreakDecision_BREAK_DECISION_PROVIDER_TO_CORRECT,
			ledgerv1.BreakDecision_BREAK_DECISION_LEDGER_TO_CORRECT, ledgerv1.BreakDecision_BREAK_DECISION_WRITTEN_OFF}}
	for _, it := range res.GetItems() {
		if it.GetResult() == ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MATCHED {
			d.Match = append(d.Match, it)
		} else {
			d.Breaks = append(d.Breaks, it)
		}
	}
	// Open breaks first, then by result and payout.
	slices.SortStableFunc(d.Breaks, func(a, b *ledgerv1.ReconciliationItem) int {
		ao, bo := a.GetResolution() == nil, b.GetResolution() == nil
		if ao != bo {
			if ao {
				return -1
			}
			return 1
		}
		return int(a.GetResult()) - int(b.GetResult())
	})
	c.render(w, r, "reconciliation", "Reconciliation of "+run.Name, "finance", d)
}

func (c *Console) reconcileRerun(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	run := c.recon(tok)
	if run == nil {
		redirect(w, r, "/finance", "That reconciliation is no longer kept: upload the file again")
		return
	}
	flash := "Reconciled again"
	if err := c.runRecon(r, run); err != nil {
		flash = errText(err)
	}
	redirect(w, r, "/finance/reconciliations/"+tok, flash)
}

func (c *Console) resolveBreak(w http.ResponseWriter, r *http.Request) {
	tok, id := r.PathValue("token"), r.PathValue("id")
	back := "/finance/reconciliations/" + tok
	run := c.recon(tok)
	if run == nil {
		redirect(w, r, "/finance", "That reconciliation is no longer kept: upload the file again")
		return
	}
	ctx, cancel := rpcCtx(r)
	defer cancel()
	decision := ledgerv1.BreakDecision(ledgerv1.BreakDecision_value[r.FormValue("decision")])
	// A break is resolved once: one request id per break makes a double
	// submit a retry.
	_, err := c.c.ledger.ResolvePayoutBreak(c.actorCtx(ctx), &ledgerv1.ResolvePayoutBreakRequest{
		RequestId: "console:resolve:" + id, BreakId: id, Decision: decision, Note: r.FormValue("note")})
	if err != nil {
		redirect(w, r, back, errText(err))
		return
	}
	flash := "Break " + id + " resolved"
	if err := c.runRecon(r, run); err != nil {
		flash += "; the rerun failed: " + errText(err)
	}
	redirect(w, r, back, flash)
}
