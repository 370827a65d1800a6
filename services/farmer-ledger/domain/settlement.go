package domain

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SettlementColumns are the columns of a payment provider's settlement file,
// in the order Furrow writes them. Readers accept them in any order, and
// ignore extra columns.
var SettlementColumns = []string{
	"provider_reference", "payout_id", "farmer_id", "amount_fen", "currency", "status", "settled_at",
}

// Statuses of a settlement line.
const (
	SettlementSettled = "settled"
	SettlementFailed  = "failed"
	SettlementPending = "pending"
)

// SettlementLine is one line of a settlement file.
type SettlementLine struct {
	// Line is the line number in the file (the header is line 1).
	Line        int
	ProviderRef string
	PayoutID    string
	FarmerID    string
	AmountFen   int64
	Currency    string
	// Status is SettlementSettled, SettlementFailed or SettlementPending.
	Status    string
	SettledAt time.Time
}

// ErrMalformedSettlement means a settlement file could not be read; the
// error names the line.
var ErrMalformedSettlement = errors.New("malformed settlement file")

// maxSettlementField bounds a field, so a garbage file fails fast and its
// error message stays readable.
const maxSettlementField = 200

// ParseSettlement reads a settlement file: a header naming every column of
// SettlementColumns, then one line per payout. It accepts a UTF-8 byte
// order mark and blank lines, and fails on the first bad line with an error
// wrapping ErrMalformedSettlement that names the line and the column.
func ParseSettlement(data []byte) ([]SettlementLine, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8 text", ErrMalformedSettlement)
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1 // counted below, to name the line
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: empty file: want a header line %q", ErrMalformedSettlement, strings.Join(SettlementColumns, ","))
	}
	if err != nil {
		return nil, csvError(err)
	}
	col, err := settlementHeader(header)
	if err != nil {
		return nil, err
	}
	var lines []SettlementLine
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return lines, nil
		}
		if err != nil {
			return nil, csvError(err)
		}
		lineNo, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			return nil, fmt.Errorf("%w: line %d: %d fields, the header has %d", ErrMalformedSettlement, lineNo, len(rec), len(header))
		}
		l, err := settlementLine(lineNo, rec, col)
		if err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: line %d, column %d: %v", ErrMalformedSettlement, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("%w: %v", ErrMalformedSettlement, err)
}

// settlementHeader maps each required column to its index.
func settlementHeader(header []string) (map[string]int, error) {
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		if _, dup := col[name]; dup && name != "" {
			return nil, fmt.Errorf("%w: line 1: column %q appears twice", ErrMalformedSettlement, name)
		}
		col[name] = i
	}
	for _, c := range SettlementColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%w: line 1: header lacks column %q (want %s)", ErrMalformedSettlement, c, strings.Join(SettlementColumns, ","))
		}
	}
	return col, nil
}

func settlementLine(lineNo int, rec []string, col map[string]int) (SettlementLine, error) {
	field := func(name string) string { return strings.TrimSpace(rec[col[name]]) }
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s: %s", ErrMalformedSettlement, lineNo, name, fmt.Sprintf(format, args...))
	}
	for _, c := range SettlementColumns {
		v := field(c)
		if v == "" {
			return SettlementLine{}, bad(c, "is empty")
		}
		if len(v) > maxSettlementField {
			return SettlementLine{}, bad(c, "is %d bytes long; at most %d", len(v), maxSettlementField)
		}
	}
	l := SettlementLine{
		Line: lineNo, ProviderRef: field("provider_reference"), PayoutID: field("payout_id"),
		FarmerID: field("farmer_id"), Currency: field("currency"),
	}
	amount, err := strconv.ParseInt(field("amount_fen"), 10, 64)
	if err != nil {
		return SettlementLine{}, bad("amount_fen", "%q is not a whole number of fen", field("amount_fen"))
	}
	if amount <= 0 {
		return SettlementLine{}, bad("amount_fen", "must be positive, got %d", amount)
	}
	l.AmountFen = amount
	if !isCurrencyCode(l.Currency) {
		return SettlementLine{}, bad("currency", "%q is not an ISO 4217 code such as CNY", l.Currency)
	}
	switch s := strings.ToLower(field("status")); s {
	case SettlementSettled, SettlementFailed, SettlementPending:
		l.Status = s
	default:
		return SettlementLine{}, bad("status", "%q is not one of settled, failed, pending", field("status"))
	}
	at, err := time.Parse(time.RFC3339Nano, field("settled_at"))
	if err != nil {
		return SettlementLine{}, bad("settled_at", "%q is not an RFC 3339 time such as 2026-11-28T10:00:00Z", field("settled_at"))
	}
	l.SettledAt = at
	return l, nil
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// FormatSettlement writes lines as a settlement file, header first.
func FormatSettlement(w io.Writer, lines []SettlementLine) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(SettlementColumns); err != nil {
		return err
	}
	for _, l := range lines {
		if err := cw.Write([]string{
			l.ProviderRef, l.PayoutID, l.FarmerID, strconv.FormatInt(l.AmountFen, 10), l.Currency, l.Status,
			l.SettledAt.UTC().Format(time.RFC3339Nano),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
