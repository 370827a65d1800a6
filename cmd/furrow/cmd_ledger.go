package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/cmd/furrow/internal/ledgerfmt"
)

// defaultAddr is where the finance commands find Furrow's gRPC API.
const defaultAddr = "127.0.0.1:7070"

// callTimeout is the default of --timeout, which bounds one finance
// command's calls.
const callTimeout = 60 * time.Second

const ledgerUsage = `Usage: furrow ledger <command> [flags]

Finance views of the farmer ledger, read over gRPC (--addr, default
127.0.0.1:7070, or FURROW_ADDR).

Commands:
  trial-balance  totals per account; exits non-zero when debits ≠ credits
  statement      a farmer's statement for a period (opening, entries, closing)

Run 'furrow ledger <command> -h' for its flags.
`

// runLedger runs `furrow ledger …`.
func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, ledgerUsage)
		return usagef("furrow ledger: no command given")
	}
	switch args[0] {
	case "trial-balance":
		return runTrialBalance(ctx, args[1:], stdout, stderr, getenv)
	case "statement":
		return runStatement(ctx, args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, ledgerUsage)
		return nil
	}
	fmt.Fprint(stderr, ledgerUsage)
	return usagef("furrow ledger: unknown command %q", args[0])
}

// clientFlags are the flags every finance command shares.
type clientFlags struct {
	addr    string
	timeout time.Duration
	tls     clientTLS
}

func (c *clientFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.addr, "addr", envOr(getenv, "FURROW_ADDR", defaultAddr), "Furrow's gRPC address [FURROW_ADDR]")
	fs.DurationVar(&c.timeout, "timeout", callTimeout, "give up on the server after this long")
	c.tls.register(fs, getenv)
}

// dial connects to the ledger; calls made with the returned context are
// bounded by --timeout, and done closes both.
func (c *clientFlags) dial(ctx context.Context) (ledgerv1.LedgerServiceClient, context.Context, func(), error) {
	conn, ctx, done, err := dialFurrow(ctx, c.addr, c.tls, c.timeout)
	if err != nil {
		return nil, nil, nil, err
	}
	return ledgerv1.NewLedgerServiceClient(conn), ctx, done, nil
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return asUsage(err)
	}
	if fs.NArg() > 0 {
		return usagef("%s takes no arguments, got %q", fs.Name(), strings.Join(fs.Args(), " "))
	}
	return nil
}

// timeFlag parses a --since or --until value: RFC 3339, or a date
// (YYYY-MM-DD) meaning midnight UTC at its start.
func timeFlag(name, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t, err = time.Parse(time.DateOnly, v)
	}
	if err != nil {
		return nil, usagef("--%s %q: want a date (2026-11-01) or an RFC 3339 time (2026-11-01T08:00:00+08:00)", name, v)
	}
	return timestamppb.New(t), nil
}

// yuan renders fen for people: "1,234.57".
func yuan(fen int64) string { return money.FormatGrouped(fen) }

func fen(n int64) string { return strconv.FormatInt(n, 10) }

// fenInText finds amounts written in fen in an entry's description ("hold
// 3000 fen", "+250 fen", "at 680 fen/kg"): journal descriptions are
// written once, in the event, and read both in CSV (fen) and in tables
// (yuan).
var fenInText = regexp.MustCompile(`(^|[\s(:,])([+-]?)(\d{1,18}) fen(/kg)?\b`)

// yuanText rewrites the fen amounts of a description in yuan, for a table
// whose amounts are all yuan: "hold 3000 fen" → "hold 30.00 yuan", "at 680
// fen/kg" → "at 6.80 yuan/kg".
func yuanText(s string) string {
	return fenInText.ReplaceAllStringFunc(s, func(m string) string {
		g := fenInText.FindStringSubmatch(m)
		n, err := strconv.ParseInt(g[3], 10, 64)
		if err != nil {
			return m
		}
		sign := g[2]
		if sign == "-" {
			n, sign = -n, ""
		}
		return g[1] + sign + yuan(n) + " yuan" + g[4]
	})
}

func position(p interface {
	GetStream() string
	GetSequence() uint64
}) string {
	return fmt.Sprintf("%s:%d", p.GetStream(), p.GetSequence())
}

// writeTable writes rows as columns two spaces apart; align has one letter
// per column, 'l' or 'r' (amounts are right-aligned so their decimals line
// up). text/tabwriter aligns either every column right or none.
func writeTable(w io.Writer, align string, rows [][]string) error {
	widths := make([]int, len(align))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		line := make([]string, len(r))
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if align[i] == 'r' {
				line[i] = pad + c
			} else if i < len(r)-1 {
				line[i] = c + pad
			} else {
				line[i] = c
			}
		}
		b.WriteString(strings.TrimRight(strings.Join(line, "  "), " "))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var jsonOut = protojson.MarshalOptions{Multiline: true, UseProtoNames: true, EmitUnpopulated: true}

func writeJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

const trialBalanceUsage = `Usage: furrow ledger trial-balance [flags]

Prints the total debits and credits of every account of the journal and
their sums. Farmers' accounts are summed per kind (farmer:*:payable, …)
unless --by-farmer. Exits with status 1 when Σ debits ≠ Σ credits (the
totals are still printed), so it can guard a close or a deploy.

Formats: table (for people; amounts in yuan), csv and json (for machines;
amounts in fen: account,debit_fen,credit_fen,balance_fen, then a TOTAL row).

Flags:
`

func runTrialBalance(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("furrow ledger trial-balance", trialBalanceUsage, stderr)
	var cf clientFlags
	cf.register(fs, getenv)
	byFarmer := fs.Bool("by-farmer", false, "list each farmer's accounts separately")
	out := addOutput(fs, "csv", "json")
	out.alias(fs, "format", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	client, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	tb, callErr := client.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{ByFarmer: *byFarmer})
	if callErr != nil {
		// An unbalanced journal comes back as DATA_LOSS with the totals
		// attached: print them, then fail.
		st, _ := status.FromError(callErr)
		tb = nil
		if st.Code() == codes.DataLoss {
			for _, d := range st.Details() {
				if r, ok := d.(*ledgerv1.GetTrialBalanceResponse); ok {
					tb = r
				}
			}
		}
		if tb == nil {
			return fmt.Errorf("trial balance: %w", callErr)
		}
	}
	if err := printTrialBalance(stdout, tb, out.value); err != nil {
		return err
	}
	if callErr != nil || !tb.GetBalanced() {
		return problemf("the journal does not balance: debits %s CNY, credits %s CNY (difference %s CNY)",
			yuan(tb.GetTotalDebitFen()), yuan(tb.GetTotalCreditFen()), yuan(tb.GetTotalDebitFen()-tb.GetTotalCreditFen()))
	}
	return nil
}

func printTrialBalance(w io.Writer, tb *ledgerv1.GetTrialBalanceResponse, format string) error {
	switch format {
	case "json":
		return writeJSON(w, tb)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"account", "debit_fen", "credit_fen", "balance_fen"})
		for _, a := range tb.GetAccounts() {
			_ = cw.Write([]string{a.GetAccount(), fen(a.GetDebitFen()), fen(a.GetCreditFen()), fen(a.GetBalanceFen())})
		}
		_ = cw.Write([]string{"TOTAL", fen(tb.GetTotalDebitFen()), fen(tb.GetTotalCreditFen()), fen(tb.GetTotalDebitFen() - tb.GetTotalCreditFen())})
		cw.Flush()
		return cw.Error()
	}
	rows := [][]string{{"ACCOUNT", "DEBIT", "CREDIT", "BALANCE (Dr+ / Cr-)"}}
	for _, a := range tb.GetAccounts() {
		rows = append(rows, []string{a.GetAccount(), yuan(a.GetDebitFen()), yuan(a.GetCreditFen()), yuan(a.GetBalanceFen())})
	}
	rows = append(rows, []string{"TOTAL", yuan(tb.GetTotalDebitFen()), yuan(tb.GetTotalCreditFen()), yuan(tb.GetTotalDebitFen() - tb.GetTotalCreditFen())})
	if err := writeTable(w, "lrrr", rows); err != nil {
		return err
	}
	verdict := "yes"
	if !tb.GetBalanced() {
		verdict = "NO"
	}
	_, err := fmt.Fprintf(w, "\nBalanced: %s — %d entries, amounts in yuan (CNY), as of %s\n", verdict, tb.GetEntries(), position(tb.GetAsOf()))
	return err
}

const statementUsage = `Usage: furrow ledger statement --farmer ID [--since DATE] [--until DATE] [-o table|csv|json]

Prints a farmer's statement for the period [--since, --until): the opening
balance, every journal entry with the event it accounts for, and the closing
balance, where opening + entries = closing for every column. Dates are
YYYY-MM-DD (midnight UTC at the start of that day) or RFC 3339 times;
--until is exclusive (--until 2026-12-01 ends with 30 November) and defaults to now.

The table is for people: every amount in it is in yuan with two decimals
(CNY), those in the entries' descriptions included.

With --csv it writes one row per line of the statement:
  row (opening, entry, closing), sequence, posted_at, entry_id, source_stream,
  source_sequence, source_event_id, source_type, payout_id, description,
  purchases_fen, premiums_fen, held_fen, paid_fen, available_fen,
  available_after_fen
where the *_fen columns hold the balance on opening and closing rows and the
entry's change on entry rows. Amounts are integers in fen, and descriptions
are as the journal recorded them (in fen too).

Flags:
`

func runStatement(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("furrow ledger statement", statementUsage, stderr)
	var cf clientFlags
	cf.register(fs, getenv)
	farmer := fs.String("farmer", "", "farmer id (required)")
	from := fs.String("since", "", "start of the period, inclusive (default: the beginning)")
	to := fs.String("until", "", "end of the period, exclusive (default: now)")
	fs.Var(stringAlias{from}, "from", "the same as --since")
	fs.Var(stringAlias{to}, "to", "the same as --until")
	out := addOutput(fs, "csv", "json")
	out.alias(fs, "csv", "csv")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *farmer == "" {
		fs.Usage()
		return usagef("--farmer is required")
	}
	req := &ledgerv1.GetFarmerStatementRequest{FarmerId: *farmer}
	var err error
	if req.From, err = timeFlag("since", *from); err != nil {
		return err
	}
	if req.To, err = timeFlag("until", *to); err != nil {
		return err
	}
	client, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	st, err := client.GetFarmerStatement(ctx, req)
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	switch {
	case out.is("csv"):
		return ledgerfmt.StatementCSV(stdout, st) // amounts in fen
	case out.is("json"):
		return writeJSON(stdout, st)
	}
	return statementTable(stdout, st)
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "the beginning"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// shortType drops the package of an event type for the table.
func shortType(t string) string { return t[strings.LastIndexByte(t, '.')+1:] }

func statementTable(w io.Writer, st *ledgerv1.GetFarmerStatementResponse) error {
	f := st.GetFarmer()
	fmt.Fprintf(w, "Statement of %s %s (%s county, %s)\nPeriod %s to %s, amounts in yuan (CNY), as of %s\n\n",
		f.GetFarmerId(), f.GetName(), f.GetCounty(), f.GetCooperative(), when(st.GetFrom()), when(st.GetTo()), position(st.GetAsOf()))
	rows := [][]string{{"SEQ", "POSTED (UTC)", "SOURCE", "DESCRIPTION", "PURCHASES", "PREMIUMS", "HELD", "PAID", "AVAILABLE", "AVAILABLE AFTER"}}
	row := func(seq, posted, source, desc string, b *ledgerv1.FarmerBalance, after int64) {
		rows = append(rows, []string{seq, posted, source, desc,
			yuan(b.GetPurchasesFen()), yuan(b.GetPremiumsFen()), yuan(b.GetHeldFen()), yuan(b.GetPaidFen()), yuan(b.GetAvailableFen()), yuan(after)})
	}
	row("", "", "", "Opening balance", st.GetOpening(), st.GetOpening().GetAvailableFen())
	for _, e := range st.GetEntries() {
		src := e.GetSource()
		row(strconv.FormatUint(e.GetSequence(), 10), e.GetPostedAt().AsTime().UTC().Format(time.DateTime),
			fmt.Sprintf("%s %s:%d", shortType(src.GetEventType()), src.GetStream(), src.GetSequence()),
			yuanText(e.GetDescription()), e.GetChange(), e.GetAvailableAfterFen())
	}
	row("", "", "", "Closing balance", st.GetClosing(), st.GetClosing().GetAvailableFen())
	if err := writeTable(w, "rlllrrrrrr", rows); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "\n%d entries. Entry rows show each entry's change; opening + changes = closing.\n", len(st.GetEntries())); err != nil {
		return err
	}
	// A receivable (a premium or payable lowered after it was paid out)
	// is owed back by the farmer; it shows only when there is one.
	if o, c := st.GetOpening().GetReceivableFen(), st.GetClosing().GetReceivableFen(); o != 0 || c != 0 {
		if _, err := fmt.Fprintf(w, "Receivable (owed back by the farmer, netted against later payables and premiums): opening %s, closing %s.\n",
			yuan(o), yuan(c)); err != nil {
			return err
		}
	}
	return nil
}

const reconcileUsage = `Usage: furrow reconcile --settlement FILE.csv [--since DATE] [--until DATE] [-o table|csv|json]
       furrow reconcile resolve --break ID --decision DECISION --note TEXT [--request-id ID]

Matches the ledger's payouts against a payment provider's settlement file
and reports every row: matched, missing_in_ledger, missing_in_settlement,
amount_mismatch, status_mismatch, duplicate, farmer_mismatch, with totals.
The ledger records each break the first time a run reports it (so that only
a reported break can be resolved), and nothing else; a malformed file is
refused with its line number. The table shows amounts in yuan (CNY); CSV and
JSON in fen.

The file is CSV with the header
  provider_reference,payout_id,farmer_id,amount_fen,currency,status,settled_at
(columns in any order, extra columns ignored; status settled, failed or
pending; settled_at RFC 3339). The period [--since, --until) selects by the
provider's settled_at; dates as for 'furrow ledger statement'.

Every break has a stable id. 'furrow reconcile resolve' records a decision
about one (an event: accepted, provider_to_correct, ledger_to_correct or
written_off, with a note), and later runs show it as resolved, so what is
left open is what still needs work. --fail-on-open makes the command exit
with status 1 while any break is open.

CSV output: result,count,break_id,payout_id,provider_reference,farmer_id,
ledger_amount_fen,settlement_amount_fen,ledger_status,settlement_status,line,
resolution,detail — one row per payout or break, then one "total:<result>"
row per result with its count and amount in fen (the settlement's; the
ledger's for missing_in_settlement).

Flags:
`

// runReconcile runs `furrow reconcile …`.
func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "resolve" {
		return runResolve(ctx, args[1:], stdout, stderr, getenv)
	}
	fs := newFlagSet("furrow reconcile", reconcileUsage, stderr)
	var cf clientFlags
	cf.register(fs, getenv)
	file := fs.String("settlement", "", "the provider's settlement file (required)")
	from := fs.String("since", "", "start of the period of settled_at, inclusive")
	to := fs.String("until", "", "end of the period of settled_at, exclusive")
	fs.Var(stringAlias{from}, "from", "the same as --since")
	fs.Var(stringAlias{to}, "to", "the same as --until")
	out := addOutput(fs, "csv", "json")
	out.alias(fs, "format", "")
	failOnOpen := fs.Bool("fail-on-open", false, "exit with status 1 while a break is open")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		fs.Usage()
		return usagef("--settlement is required")
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("settlement file: %w", err)
	}
	req := &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: data}
	if req.From, err = timeFlag("since", *from); err != nil {
		return err
	}
	if req.To, err = timeFlag("until", *to); err != nil {
		return err
	}
	client, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	rec, err := client.ReconcilePayouts(ctx, req)
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
			return fmt.Errorf("%s: %s", *file, st.Message())
		}
		return fmt.Errorf("reconcile: %w", err)
	}
	switch out.value {
	case "json":
		err = writeJSON(stdout, rec)
	case "csv":
		err = reconcileCSV(stdout, rec)
	default:
		err = reconcileTable(stdout, filepath.Base(*file), rec)
	}
	if err != nil {
		return err
	}
	if open := rec.GetTotals().GetOpenBreaks(); *failOnOpen && open > 0 {
		return problemf("%d open breaks", open)
	}
	return nil
}

// resultName is a result as the reports spell it (matched, amount_mismatch, …).
func resultName(r ledgerv1.ReconciliationResult) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "RECONCILIATION_RESULT_"))
}

func decisionName(d ledgerv1.BreakDecision) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "BREAK_DECISION_"))
}

func resolution(it *ledgerv1.ReconciliationItem) string {
	switch {
	case it.GetBreakId() == "":
		return ""
	case it.GetResolution() == nil:
		return "open"
	}
	return "resolved: " + decisionName(it.GetResolution().GetDecision())
}

func reconcileCSV(w io.Writer, rec *ledgerv1.ReconcilePayoutsResponse) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"result", "count", "break_id", "payout_id", "provider_reference", "farmer_id", "ledger_amount_fen",
		"settlement_amount_fen", "ledger_status", "settlement_status", "line", "resolution", "detail"})
	for _, it := range rec.GetItems() {
		_ = cw.Write([]string{resultName(it.GetResult()), "1", it.GetBreakId(), it.GetPayoutId(), it.GetProviderReference(), it.GetFarmerId(),
			fen(it.GetLedgerAmountFen()), fen(it.GetSettlementAmountFen()), it.GetLedgerStatus(), it.GetSettlementStatus(),
			strconv.Itoa(int(it.GetLine())), resolution(it), it.GetDetail()})
	}
	for _, t := range rec.GetTotals().GetByResult() {
		// A payout missing in the settlement has only the ledger's amount.
		ledgerAmount, settlementAmount := "", fen(t.GetAmountFen())
		if t.GetResult() == ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MISSING_IN_SETTLEMENT {
			ledgerAmount, settlementAmount = settlementAmount, ""
		}
		_ = cw.Write([]string{"total:" + resultName(t.GetResult()), strconv.Itoa(int(t.GetCount())), "", "", "", "", ledgerAmount,
			settlementAmount, "", "", "", "", ""})
	}
	cw.Flush()
	return cw.Error()
}

func reconcileTable(w io.Writer, file string, rec *ledgerv1.ReconcilePayoutsResponse) error {
	fmt.Fprintf(w, "Reconciliation of %s against the ledger as of %s (amounts in yuan, CNY)\n\n", file, position(rec.GetAsOf()))
	rows := [][]string{{"RESULT", "PAYOUT", "PROVIDER REF", "FARMER", "LEDGER", "SETTLEMENT", "LINE", "BREAK", "STATE", "DETAIL"}}
	for _, it := range rec.GetItems() {
		line := ""
		if it.GetLine() > 0 {
			line = strconv.Itoa(int(it.GetLine()))
		}
		ledger, settlement := "", ""
		if it.GetLedgerStatus() != "" {
			ledger = yuan(it.GetLedgerAmountFen()) + " " + it.GetLedgerStatus()
		}
		if it.GetSettlementStatus() != "" {
			settlement = yuan(it.GetSettlementAmountFen()) + " " + it.GetSettlementStatus()
		}
		rows = append(rows, []string{resultName(it.GetResult()), it.GetPayoutId(), it.GetProviderReference(),
			it.GetFarmerId(), ledger, settlement, line, it.GetBreakId(), resolution(it), it.GetDetail()})
	}
	if err := writeTable(w, "llllrrrlll", rows); err != nil {
		return err
	}
	t := rec.GetTotals()
	fmt.Fprintf(w, "\nTotals\n")
	rows = [][]string{{"", "COUNT", "AMOUNT"},
		{"settlement lines in period", strconv.Itoa(int(t.GetSettlementLines())), yuan(t.GetSettlementFen())},
		{"ledger payouts in period", strconv.Itoa(int(t.GetLedgerPayouts())), yuan(t.GetLedgerFen())},
	}
	for _, r := range t.GetByResult() {
		rows = append(rows, []string{resultName(r.GetResult()), strconv.Itoa(int(r.GetCount())), yuan(r.GetAmountFen())})
	}
	if err := writeTable(w, "lrr", rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nBreaks: %d open, %d resolved.\n", t.GetOpenBreaks(), t.GetResolvedBreaks())
	return err
}

const resolveUsage = `Usage: furrow reconcile resolve --break ID --decision DECISION --note TEXT [--request-id ID]

Records finance's decision about a reconciliation break (an event in the
ledger): accepted (explained, nothing to do), provider_to_correct,
ledger_to_correct or written_off, with a note saying why. Only a break a
reconciliation reported can be resolved (an unknown id is refused), and a
break is resolved once. --request-id makes a retry safe (default: derived
from the break id and decision).

Flags:
`

// decisions are the values --decision takes, as the API's BreakDecision
// names them without their prefix.
var decisions = []string{"accepted", "provider_to_correct", "ledger_to_correct", "written_off"}

// decisionFlag parses --decision ("" is left to the required-flag check).
func decisionFlag(v string) (ledgerv1.BreakDecision, error) {
	if v == "" {
		return 0, nil
	}
	if slices.Contains(decisions, v) {
		return ledgerv1.BreakDecision(ledgerv1.BreakDecision_value["BREAK_DECISION_"+strings.ToUpper(v)]), nil
	}
	return 0, fmt.Errorf("--decision %q: want one of %s", v, strings.Join(decisions, ", "))
}

func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("furrow reconcile resolve", resolveUsage, stderr)
	var cf clientFlags
	cf.register(fs, getenv)
	breakID := fs.String("break", "", "the break id, as reconcile reports it (required)")
	decision := fs.String("decision", "", "accepted, provider_to_correct, ledger_to_correct or written_off (required)")
	note := fs.String("note", "", "why (required)")
	requestID := fs.String("request-id", "", "idempotency key of this decision")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	d, err := decisionFlag(*decision)
	var missing []string
	if *breakID == "" {
		missing = append(missing, "--break")
	}
	if *decision == "" {
		missing = append(missing, "--decision")
	}
	if strings.TrimSpace(*note) == "" {
		missing = append(missing, "--note")
	}
	switch {
	case len(missing) > 0:
		fs.Usage()
		return usagef("%s required", strings.Join(missing, ", "))
	case err != nil:
		return err
	}
	if *requestID == "" {
		*requestID = "cli-resolve:" + *breakID + ":" + *decision
	}
	client, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := client.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{
		RequestId: *requestID, BreakId: *breakID, Decision: d, Note: *note,
	})
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		return fmt.Errorf("break %s not found: no reconciliation reported it (resolve a BREAK id that 'furrow reconcile' prints)", *breakID)
	}
	if err != nil {
		return fmt.Errorf("resolve %s: %w", *breakID, err)
	}
	_, err = fmt.Fprintf(stdout, "Break %s resolved (%s) at %s.\n", *breakID, *decision, position(res.GetPosition()))
	return err
}
