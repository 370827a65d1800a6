package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

const traceUsage = `Usage: furrow trace lot DELIVERY_ID [--json]
       furrow trace farmer FARMER_ID [--since YYYY-MM] [--until YYYY-MM] [-o table|json]

Traceability, read over gRPC from the ledger's trace read models (--addr,
default 127.0.0.1:7070, or FURROW_ADDR).

  lot     a delivered lot's life: the delivery and its corrections, every
          branded sale of it with the premium rule applied, each premium
          event, the ledger entries they caused and the payouts that carried
          their money (allocated first-in first-out, to the fen)
  farmer  a farmer's months in kilograms and yuan: delivered, sold under a
          brand, earning a premium

Tables show yuan (CNY) and kilograms; --json prints the gRPC response
(fen and grams).
`

// runTrace runs `furrow trace …`.
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) < 1 {
		fmt.Fprint(stderr, traceUsage)
		return usagef("furrow trace: no command given")
	}
	switch args[0] {
	case "lot", "farmer":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, traceUsage)
		return nil
	default:
		fmt.Fprint(stderr, traceUsage)
		return usagef("furrow trace: unknown command %q", args[0])
	}
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		fmt.Fprint(stderr, traceUsage)
		return usagef("furrow trace %s: an id is required", args[0])
	}
	fs := newFlagSet("furrow trace "+args[0], traceUsage, stderr)
	var cf clientFlags
	cf.register(fs, getenv)
	out := addOutput(fs, "json")
	out.alias(fs, "json", "json")
	from := fs.String("since", "", "first month, YYYY-MM (farmer)")
	to := fs.String("until", "", "last month, YYYY-MM (farmer)")
	fs.Var(stringAlias{from}, "from", "the same as --since")
	fs.Var(stringAlias{to}, "to", "the same as --until")
	if err := parseFlags(fs, args[2:]); err != nil {
		return err
	}
	client, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	if args[0] == "lot" {
		res, err := client.TraceLot(ctx, &ledgerv1.TraceLotRequest{DeliveryId: args[1]})
		if err != nil {
			return fmt.Errorf("trace lot: %w", err)
		}
		if out.is("json") {
			return printJSON(stdout, protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Format(res))
		}
		return lotTable(stdout, res)
	}
	res, err := client.TraceFarmer(ctx, &ledgerv1.TraceFarmerRequest{FarmerId: args[1], MonthFrom: *from, MonthTo: *to})
	if err != nil {
		return fmt.Errorf("trace farmer: %w", err)
	}
	if out.is("json") {
		return printJSON(stdout, protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Format(res))
	}
	return farmerTraceTable(stdout, res)
}

func printJSON(w io.Writer, s string) error {
	_, err := fmt.Fprintln(w, s)
	return err
}

// withheldReasons names furrow.brand.v1.WithheldReason numbers.
var withheldReasons = map[int32]string{1: "not enrolled", 2: "suspended", 3: "no rule", 4: "withdrawn", 5: "brand retired"}

// kg renders grams as kilograms, grouped, with up to three decimals:
// "1,834.567".
func kg(grams int64) string {
	sign := ""
	if grams < 0 {
		sign, grams = "-", -grams
	}
	whole := strconv.FormatInt(grams/1000, 10)
	for i := len(whole) - 3; i > 0; i -= 3 {
		whole = whole[:i] + "," + whole[i:]
	}
	frac := strings.TrimRight(fmt.Sprintf("%03d", grams%1000), "0")
	if frac == "" {
		return sign + whole
	}
	return sign + whole + "." + frac
}

func lotTable(w io.Writer, t *ledgerv1.TraceLotResponse) error {
	d, c := t.GetRecorded(), t.GetCurrent()
	var b strings.Builder
	where := d.GetDistributionCentre()
	if where == "" {
		where = d.GetWarehouse()
	}
	if where == "" {
		where = "an unnamed centre"
	}
	fmt.Fprintf(&b, "Lot %s: farmer %s, %s grade %s, weighed in %s UTC at %s (%s county)\n",
		d.GetDeliveryId(), d.GetFarmerId(), d.GetProduct(), d.GetGrade(), d.GetWeighedAt().AsTime().UTC().Format(time.DateTime),
		where, d.GetCounty())
	fmt.Fprintf(&b, "  recorded  %s kg at %s yuan/kg = %s yuan payable\n", kg(d.GetNetGrams()), yuan(d.GetPriceFenPerKg()), yuan(d.GetAmountFen()))
	for _, k := range t.GetCorrections() {
		fmt.Fprintf(&b, "  correction %d: %s kg grade %s at %s yuan/kg = %s yuan (reverses %s; %s)\n", k.GetCorrectionNumber(),
			kg(k.GetNetGrams()), k.GetGrade(), yuan(k.GetPriceFenPerKg()), yuan(k.GetAmountFen()), yuan(k.GetReversedAmountFen()), k.GetReason())
	}
	if len(t.GetCorrections()) > 0 {
		fmt.Fprintf(&b, "  now       %s kg = %s yuan payable\n", kg(c.GetNetGrams()), yuan(c.GetAmountFen()))
	}
	b.WriteString("\nSales of the lot (as they stand):\n")
	rows := [][]string{{"SALE", "BRAND", "CHANNEL", "SOLD (UTC)", "KG", "RULE", "YUAN/KG", "PREMIUM", "WITHHELD"}}
	for _, s := range t.GetSales() {
		rule, withheld := "", ""
		if s.GetRuleId() != "" {
			rule = fmt.Sprintf("%s v%d", s.GetRuleId(), s.GetRuleVersion())
		}
		if s.GetWithheldReason() != 0 {
			withheld = withheldReasons[s.GetWithheldReason()]
		}
		rows = append(rows, []string{s.GetSaleId(), s.GetBrandId(), s.GetChannel(), s.GetSoldAt().AsTime().UTC().Format(time.DateTime),
			kg(s.GetGrams()), rule, yuan(s.GetFenPerKg()), yuan(s.GetPremiumFen()), withheld})
	}
	if err := flushTable(w, &b, "llllrlrrr", rows); err != nil {
		return err
	}
	b.WriteString("\nPremium events:\n")
	rows = [][]string{{"SEQ", "KIND", "SALE", "KG", "RULE", "YUAN/KG", "CHANGE", "PREMIUM", "REASON"}}
	for _, e := range t.GetPremiumEvents() {
		rule := ""
		if e.GetRuleId() != "" {
			rule = fmt.Sprintf("%s v%d", e.GetRuleId(), e.GetRuleVersion())
		}
		rows = append(rows, []string{strconv.FormatUint(e.GetSequence(), 10), e.GetKind(), e.GetSaleId(), kg(e.GetGrams()), rule,
			yuan(e.GetFenPerKg()), yuan(e.GetDeltaFen()), yuan(e.GetPremiumFen()), e.GetReason()})
	}
	if err := flushTable(w, &b, "rllrlrrrl", rows); err != nil {
		return err
	}
	b.WriteString("\nLedger entries and where their money went:\n")
	rows = [][]string{{"SEQ", "ENTRY", "KIND", "YUAN", "ALLOCATED", "OPEN"}}
	for _, e := range t.GetEntries() {
		var parts []string
		for _, a := range e.GetAllocations() {
			p := a.GetKind() + " " + yuan(a.GetFen())
			if a.GetPayoutId() != "" {
				p = a.GetPayoutId() + " " + yuan(a.GetFen())
			}
			parts = append(parts, p)
		}
		rows = append(rows, []string{strconv.FormatUint(e.GetLedgerSequence(), 10), e.GetEntryId(), e.GetKind(), yuan(e.GetAmountFen()),
			strings.Join(parts, "; "), yuan(e.GetOpenFen())})
	}
	if err := flushTable(w, &b, "rllrlr", rows); err != nil {
		return err
	}
	b.WriteString("\nPayouts that carried the lot:\n")
	rows = [][]string{{"PAYOUT", "PAYOUT YUAN", "OF THIS LOT"}}
	for _, p := range t.GetPayouts() {
		rows = append(rows, []string{p.GetPayoutId(), yuan(p.GetAmountFen()), yuan(p.GetLotFen())})
	}
	if err := flushTable(w, &b, "lrr", rows); err != nil {
		return err
	}
	s := t.GetTotals()
	fmt.Fprintf(&b, "\nDelivered %s kg, sold %s kg under a brand (%s kg earning). Payable %s, premium %s, paid %s, unpaid %s, owed back %s (yuan).\nAllocation: %s.\n",
		kg(s.GetDeliveredGrams()), kg(s.GetSoldGrams()), kg(s.GetEarningGrams()), yuan(s.GetPayableFen()), yuan(s.GetPremiumFen()),
		yuan(s.GetPaidFen()), yuan(s.GetUnpaidFen()), yuan(s.GetReceivableFen()), t.GetAllocation())
	_, err := io.WriteString(w, b.String())
	return err
}

// flushTable writes what b holds so far, then the table, to w.
func flushTable(w io.Writer, b *strings.Builder, align string, rows [][]string) error {
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	b.Reset()
	return writeTable(w, align, rows)
}

func farmerTraceTable(w io.Writer, t *ledgerv1.TraceFarmerResponse) error {
	if _, err := fmt.Fprintf(w, "Farmer %s: kilograms and yuan per month (CST)\n", t.GetFarmerId()); err != nil {
		return err
	}
	rows := [][]string{{"MONTH", "DELIVERIES", "DELIVERED KG", "PAYABLE", "BRANDED KG", "EARNING KG", "PREMIUM"}}
	add := func(label string, m *ledgerv1.TraceMonth) {
		rows = append(rows, []string{label, strconv.Itoa(int(m.GetDeliveries())), kg(m.GetDeliveredGrams()), yuan(m.GetPayableFen()),
			kg(m.GetBrandedGrams()), kg(m.GetEarningGrams()), yuan(m.GetPremiumFen())})
	}
	for _, m := range t.GetMonths() {
		add(m.GetMonth(), m)
	}
	add("total", t.GetTotal())
	return writeTable(w, "lrrrrrr", rows)
}
