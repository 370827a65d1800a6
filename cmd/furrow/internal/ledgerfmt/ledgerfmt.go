// Package ledgerfmt writes the ledger's reports in the formats finance
// takes them in, once for every client that offers them (the furrow CLI,
// the web console).
package ledgerfmt

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

// StatementCSV writes a farmer's statement as CSV, amounts in fen: the
// opening balance, one row per entry (with its source event and the
// balance after it), and the closing balance.
func StatementCSV(w io.Writer, st *ledgerv1.GetFarmerStatementResponse) error {
	fen := func(n int64) string { return strconv.FormatInt(n, 10) }
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"row", "sequence", "posted_at", "entry_id", "source_stream", "source_sequence", "source_event_id",
		"source_type", "payout_id", "description", "purchases_fen", "premiums_fen", "held_fen", "paid_fen", "available_fen",
		"available_after_fen"})
	balance := func(row string, b *ledgerv1.FarmerBalance, at *timestamppb.Timestamp) []string {
		posted := ""
		if at != nil {
			posted = at.AsTime().UTC().Format(time.RFC3339Nano)
		}
		return []string{row, "", posted, "", "", "", "", "", "", row + " balance",
			fen(b.GetPurchasesFen()), fen(b.GetPremiumsFen()), fen(b.GetHeldFen()), fen(b.GetPaidFen()), fen(b.GetAvailableFen()),
			fen(b.GetAvailableFen())}
	}
	_ = cw.Write(balance("opening", st.GetOpening(), st.GetFrom()))
	for _, e := range st.GetEntries() {
		c := e.GetChange()
		_ = cw.Write([]string{"entry", strconv.FormatUint(e.GetSequence(), 10), e.GetPostedAt().AsTime().UTC().Format(time.RFC3339Nano),
			e.GetEntryId(), e.GetSource().GetStream(), strconv.FormatUint(e.GetSource().GetSequence(), 10), e.GetSource().GetEventId(),
			e.GetSource().GetEventType(), e.GetPayoutId(), e.GetDescription(),
			fen(c.GetPurchasesFen()), fen(c.GetPremiumsFen()), fen(c.GetHeldFen()), fen(c.GetPaidFen()), fen(c.GetAvailableFen()),
			fen(e.GetAvailableAfterFen())})
	}
	_ = cw.Write(balance("closing", st.GetClosing(), st.GetTo()))
	cw.Flush()
	return cw.Error()
}
