package service

import (
	"fmt"
	"strconv"
	"time"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// Flag names of the payout controls, the same in the farmer-ledger binary
// and furrow dev.
const (
	FlagCoolingOff       = "payout-cooling-off"
	FlagApprovalAboveFen = "payout-approval-above-fen"
)

// ParsePayoutControls reads the payout controls from their flag values: a
// duration (time.ParseDuration: "24h", "1m", "0" for none) and an amount
// in fen ("0" for no four-eyes).
func ParsePayoutControls(coolingOff, approvalAboveFen string) (domain.PayoutControls, error) {
	d, err := time.ParseDuration(coolingOff)
	if err != nil || d < 0 {
		return domain.PayoutControls{}, fmt.Errorf("--%s %q: want a duration such as 24h, or 0 for none", FlagCoolingOff, coolingOff)
	}
	n, err := strconv.ParseInt(approvalAboveFen, 10, 64)
	if err != nil || n < 0 || n > domain.MaxPayoutFen {
		return domain.PayoutControls{}, fmt.Errorf("--%s %q: want an amount in fen from 0 (no four-eyes) to %d", FlagApprovalAboveFen, approvalAboveFen, domain.MaxPayoutFen)
	}
	return domain.PayoutControls{CoolingOff: d, ApprovalAboveFen: n}, nil
}
