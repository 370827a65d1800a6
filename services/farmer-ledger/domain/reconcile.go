package domain

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/limits"
	"github.com/furrow/furrow/pkg/money"
)

// LedgerPayout is a payout as reconciliation sees the ledger's side.
type LedgerPayout struct {
	ID          string
	FarmerID    string
	AmountFen   int64
	Currency    string
	Status      PayoutStatus
	ProviderRef string
	// CompletedAt is when the provider settled or failed it (zero before).
	CompletedAt time.Time
}

// settlementStatus is how a settlement file would show the payout.
func (p LedgerPayout) settlementStatus() string {
	switch p.Status {
	case PayoutStatusSettled:
		return SettlementSettled
	case PayoutStatusFailed:
		return SettlementFailed
	}
	return SettlementPending
}

// Period is a half-open time interval [From, To); a zero bound is open.
type Period struct {
	From, To time.Time
}

// Contains reports whether t lies in the period.
func (p Period) Contains(t time.Time) bool {
	return (p.From.IsZero() || !t.Before(p.From)) && (p.To.IsZero() || t.Before(p.To))
}

// Check fails when the period ends before it starts.
func (p Period) Check() error {
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		return failure.Invalid("to", "the period ends (%s) before it starts (%s)", p.To.Format(time.RFC3339), p.From.Format(time.RFC3339))
	}
	return nil
}

// ReconResult classifies a row of a reconciliation.
type ReconResult int

// Results of a reconciliation row; every one but ReconMatched is a break.
const (
	ReconMatched ReconResult = iota + 1
	ReconMissingInLedger
	ReconMissingInSettlement
	ReconAmountMismatch
	ReconStatusMismatch
	ReconDuplicate
	ReconFarmerMismatch
)

// ReconResults lists every result, in report order.
var ReconResults = []ReconResult{
	ReconMatched, ReconMissingInLedger, ReconMissingInSettlement, ReconAmountMismatch,
	ReconStatusMismatch, ReconDuplicate, ReconFarmerMismatch,
}

func (r ReconResult) String() string {
	switch r {
	case ReconMatched:
		return "matched"
	case ReconMissingInLedger:
		return "missing_in_ledger"
	case ReconMissingInSettlement:
		return "missing_in_settlement"
	case ReconAmountMismatch:
		return "amount_mismatch"
	case ReconStatusMismatch:
		return "status_mismatch"
	case ReconDuplicate:
		return "duplicate"
	case ReconFarmerMismatch:
		return "farmer_mismatch"
	}
	return "unknown"
}

// ReconItem is one row of a reconciliation: a matched payout or a break.
type ReconItem struct {
	Result ReconResult
	// BreakID identifies a break across runs (empty when matched): the
	// same difference between the same two sides gets the same id.
	BreakID             string
	PayoutID            string
	ProviderRef         string
	FarmerID            string
	LedgerAmountFen     int64
	SettlementAmountFen int64
	LedgerStatus        string
	SettlementStatus    string
	// Line is the settlement file line (0: none).
	Line   int
	Detail string
}

// AmountFen is the amount the row is about: the settlement's, or the
// ledger's for a payout missing in the settlement.
func (i ReconItem) AmountFen() int64 {
	if i.Result == ReconMissingInSettlement {
		return i.LedgerAmountFen
	}
	return i.SettlementAmountFen
}

// Reconciliation is the outcome of matching the ledger's payouts against a
// settlement file.
type Reconciliation struct {
	Items []ReconItem
	// SettlementLines and SettlementFen count the file's lines in scope.
	SettlementLines int
	SettlementFen   int64
	// LedgerPayouts and LedgerFen count the ledger's payouts in scope.
	LedgerPayouts int
	LedgerFen     int64
}

// Reconcile matches the ledger's payouts against a settlement file's lines
// for a period of the provider's settled_at.
//
// A line is in scope when its settled_at falls in the period, or when the
// ledger completed its payout in the period; a ledger payout is in scope
// when it completed in the period or an in-scope line names it. Scoping
// both sides by either side's time keeps a payout completed near a period
// boundary from showing as a false break. Payouts still in flight are not
// expected in a settlement file: they are breaks only when a line names
// them (a status mismatch).
//
// The first line of a payout id (or of a provider reference) is compared
// with the ledger; each further line is a duplicate. One line can raise
// several breaks (its amount and its status may both differ).
//
// The totals are summed with overflow checks: a file whose amounts add up
// beyond int64 fen is refused (Invalid settlement_csv) rather than totalled
// to a wrapped number.
func Reconcile(ledger []LedgerPayout, lines []SettlementLine, period Period) (Reconciliation, error) {
	byID := make(map[string]LedgerPayout, len(ledger))
	for _, p := range ledger {
		byID[p.ID] = p
	}
	completedIn := func(p LedgerPayout) bool { return p.Status.Final() && period.Contains(p.CompletedAt) }

	var rec Reconciliation
	named := map[string]bool{}     // ledger payouts an in-scope line names
	firstByID := map[string]int{}  // payout id → first line
	firstByRef := map[string]int{} // provider reference → first line
	dupCount := map[string]int{}
	for _, l := range lines {
		p, known := byID[l.PayoutID]
		if !period.Contains(l.SettledAt) && !(known && completedIn(p)) {
			continue
		}
		rec.SettlementLines++
		sum, err := money.Add(rec.SettlementFen, l.AmountFen)
		if err != nil {
			return Reconciliation{}, &failure.Error{Kind: failure.KindInvalid, Field: "settlement_csv",
				Msg: fmt.Sprintf("the amounts up to line %d add up to more than int64 fen", l.Line), Err: err}
		}
		rec.SettlementFen = sum
		item := ReconItem{
			PayoutID: l.PayoutID, ProviderRef: l.ProviderRef, FarmerID: l.FarmerID,
			SettlementAmountFen: l.AmountFen, SettlementStatus: l.Status, Line: l.Line,
		}
		if known {
			item.LedgerAmountFen, item.LedgerStatus = p.AmountFen, p.settlementStatus()
		}
		first, dupID := firstByID[l.PayoutID]
		if !dupID {
			first = firstByRef[l.ProviderRef]
		}
		if first != 0 {
			key := l.PayoutID + "\x00" + l.ProviderRef
			dupCount[key]++
			item.Result = ReconDuplicate
			what := "payout id " + l.PayoutID
			if !dupID {
				what = "provider reference " + l.ProviderRef
			}
			item.Detail = fmt.Sprintf("%s already on line %d", what, first)
			item.BreakID = breakID(item, strconv.Itoa(dupCount[key]))
			rec.Items = append(rec.Items, item)
			continue
		}
		firstByID[l.PayoutID] = l.Line
		firstByRef[l.ProviderRef] = l.Line
		if !known {
			item.Result = ReconMissingInLedger
			item.Detail = "the ledger has no payout " + l.PayoutID
			item.BreakID = breakID(item, "")
			rec.Items = append(rec.Items, item)
			continue
		}
		named[p.ID] = true
		rec.Items = append(rec.Items, compare(p, l, item)...)
	}
	for _, p := range ledger {
		if !completedIn(p) && !named[p.ID] {
			continue
		}
		rec.LedgerPayouts++
		sum, err := money.Add(rec.LedgerFen, p.AmountFen)
		if err != nil {
			return Reconciliation{}, failure.Overflow(err, "the ledger's payouts in the period add up to more than int64 fen")
		}
		rec.LedgerFen = sum
		if named[p.ID] {
			continue
		}
		item := ReconItem{
			Result: ReconMissingInSettlement, PayoutID: p.ID, ProviderRef: p.ProviderRef, FarmerID: p.FarmerID,
			LedgerAmountFen: p.AmountFen, LedgerStatus: p.settlementStatus(),
			Detail: fmt.Sprintf("the ledger has it %s at %s; the file does not list it", p.Status, p.CompletedAt.UTC().Format(time.RFC3339)),
		}
		item.BreakID = breakID(item, "")
		rec.Items = append(rec.Items, item)
	}
	slices.SortStableFunc(rec.Items, func(a, b ReconItem) int {
		return cmp.Or(cmp.Compare(a.Result, b.Result), cmp.Compare(a.PayoutID, b.PayoutID), cmp.Compare(a.Line, b.Line))
	})
	return rec, nil
}

// compare matches one line with its ledger payout.
func compare(p LedgerPayout, l SettlementLine, item ReconItem) []ReconItem {
	var out []ReconItem
	add := func(r ReconResult, detail string) {
		b := item
		b.Result, b.Detail = r, detail
		b.BreakID = breakID(b, "")
		out = append(out, b)
	}
	if l.FarmerID != p.FarmerID {
		add(ReconFarmerMismatch, fmt.Sprintf("the file pays farmer %s, the ledger farmer %s", l.FarmerID, p.FarmerID))
	}
	if l.AmountFen != p.AmountFen || l.Currency != p.Currency {
		add(ReconAmountMismatch, amountMismatch(l.AmountFen, l.Currency, p.AmountFen, p.Currency))
	}
	if l.Status != p.settlementStatus() {
		add(ReconStatusMismatch, fmt.Sprintf("the file says %s, the ledger has it %s", l.Status, p.Status))
	}
	if len(out) == 0 {
		item.Result = ReconMatched
		if p.ProviderRef != "" && p.ProviderRef != l.ProviderRef {
			item.Detail = "provider reference differs: the ledger has " + p.ProviderRef
		}
		out = append(out, item)
	}
	return out
}

// amountMismatch says how a settlement line's amount differs from the
// ledger's, in yuan with two decimals as the reports show amounts to
// people ("100.01 CNY"): both sides and, in one currency, the difference.
// The rows themselves carry the exact fen.
func amountMismatch(fileFen int64, fileCurrency string, ledgerFen int64, ledgerCurrency string) string {
	s := fmt.Sprintf("the file says %s %s, the ledger %s %s", money.FormatGrouped(fileFen), fileCurrency,
		money.FormatGrouped(ledgerFen), ledgerCurrency)
	if fileCurrency != ledgerCurrency {
		return s + " (different currencies)"
	}
	diff, err := money.Sub(fileFen, ledgerFen)
	if err != nil {
		return s
	}
	sign := "+"
	if diff < 0 {
		sign = ""
	}
	return fmt.Sprintf("%s (difference %s%s %s)", s, sign, money.FormatGrouped(diff), ledgerCurrency)
}

// breakID derives a break's id from what the break is about, so that a
// later run over the same difference finds the decision recorded for it.
func breakID(i ReconItem, extra string) string {
	h := sha256.New()
	for _, part := range []string{
		i.Result.String(), i.PayoutID, i.ProviderRef, i.FarmerID,
		strconv.FormatInt(i.LedgerAmountFen, 10), strconv.FormatInt(i.SettlementAmountFen, 10),
		i.LedgerStatus, i.SettlementStatus, extra,
	} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "B" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Decisions finance can record about a break.
const (
	DecisionAccepted          = "accepted"
	DecisionProviderToCorrect = "provider_to_correct"
	DecisionLedgerToCorrect   = "ledger_to_correct"
	DecisionWrittenOff        = "written_off"
)

// Event kinds of a break: reported by a reconciliation, then resolved.
const (
	KindBreakFound    = "payout_break_found"
	KindBreakResolved = "payout_break_resolved"
)

// BreakSubject is the subject of a break's event of the given kind.
func BreakSubject(breakID, kind string) string { return "ledger.break." + breakID + "." + kind }

// BreakAggregate is the subject filter of a break's events.
func BreakAggregate(breakID string) string { return "ledger.break." + breakID + ".>" }

var breakIDPattern = regexp.MustCompile(`^B[0-9a-f]{16}$`)

// maxNote bounds a resolution's note, in characters (the API's limit).
const maxNote = limits.MaxTextLen

// CheckBreakID fails unless id has the form reconciliation gives break ids.
func CheckBreakID(id string) error {
	if !breakIDPattern.MatchString(id) {
		return failure.Invalid("break_id", "%q is not a break id (B and 16 hex digits, as reconciliation reports it)", id)
	}
	return nil
}

// BreakFound is the event recording that a reconciliation reported the
// break it (a row with a BreakID) is.
func BreakFound(it ReconItem) *ledgerevents.PayoutBreakFound {
	return &ledgerevents.PayoutBreakFound{
		BreakId: it.BreakID, Result: it.Result.String(), PayoutId: it.PayoutID, ProviderReference: it.ProviderRef,
		FarmerId: it.FarmerID, LedgerAmountFen: it.LedgerAmountFen, SettlementAmountFen: it.SettlementAmountFen,
		LedgerStatus: it.LedgerStatus, SettlementStatus: it.SettlementStatus, Line: int32(it.Line), Detail: it.Detail,
	}
}

// BreakState is what a break's events say about it.
type BreakState struct {
	// Found: a reconciliation reported the break (PayoutBreakFound).
	Found bool
	// Resolved: finance recorded a decision (PayoutBreakResolved).
	Resolved bool
}

// ResolveBreak decides a break's resolution. A break is resolved once, and
// only a break a reconciliation reported can be: an id nobody reported is
// NotFound (well-formed ids are easy to mistype, and a decision about a
// difference that never existed would hide the one that does).
func ResolveBreak(breakID, decision, note string, state BreakState) (*ledgerevents.PayoutBreakResolved, error) {
	if err := CheckBreakID(breakID); err != nil {
		return nil, err
	}
	switch decision {
	case DecisionAccepted, DecisionProviderToCorrect, DecisionLedgerToCorrect, DecisionWrittenOff:
	default:
		return nil, failure.Invalid("decision", "is required: accepted, provider_to_correct, ledger_to_correct or written_off")
	}
	note = strings.TrimSpace(note)
	if note == "" {
		return nil, failure.Invalid("note", "is required: say why")
	}
	if n := utf8.RuneCountInString(note); n > maxNote {
		return nil, failure.Invalid("note", "is %d characters long; at most %d", n, maxNote)
	}
	if state.Resolved {
		return nil, failure.AlreadyExists("break_id", "break %s is already resolved", breakID)
	}
	if !state.Found {
		return nil, failure.NotFound("break_id", "no reconciliation reported a break %s: resolve the ids ReconcilePayouts reports", breakID)
	}
	return &ledgerevents.PayoutBreakResolved{BreakId: breakID, Decision: decision, Note: note}, nil
}
