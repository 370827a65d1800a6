package ports

import (
	"fmt"
	"time"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/limits"
)

// The edge checks of each request: the limits of package limits on every
// quantity, price, amount, free-text field and timestamp a caller sends,
// applied before a command runs. What the domain checks anyway (required
// fields, positive quantities, ids and codes through package ident, the
// programme's name and counties) is left to it.

// firstErr returns the first of errs that is not nil.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// programTimes checks OpenProgram's limits and returns its period.
func programTimes(req *procurementv1.OpenProgramRequest) (start, end time.Time, err error) {
	if err := limits.AtMost("budget_fen", req.GetBudgetFen(), limits.MaxAmountFen, "fen"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if start, err = limits.Time("period_start", req.GetPeriodStart()); err != nil {
		return time.Time{}, time.Time{}, err
	}
	end, err = limits.Time("period_end", req.GetPeriodEnd())
	return start, end, err
}

// orderTimes checks PlaceOrder's limits and returns its delivery window.
func orderTimes(req *procurementv1.PlaceOrderRequest) (start, end time.Time, err error) {
	for i, p := range req.GetPrices() {
		field := fmt.Sprintf("prices[%d].price_fen_per_kg", i)
		if err := limits.AtMost(field, p.GetPriceFenPerKg(), limits.MaxPriceFenPerKg, "fen/kg"); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if err := limits.AtMost("ordered_grams", req.GetOrderedGrams(), limits.MaxOrderGrams, "g"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if start, err = limits.Time("window_start", req.GetWindowStart()); err != nil {
		return time.Time{}, time.Time{}, err
	}
	end, err = limits.Time("window_end", req.GetWindowEnd())
	return start, end, err
}

// weighedAt checks RecordDelivery's limits and returns when it was weighed
// (zero when unset: the command defaults it to now).
func weighedAt(req *procurementv1.RecordDeliveryRequest, now time.Time) (time.Time, error) {
	if err := firstErr(
		limits.Text("product", req.GetProduct(), limits.MaxCodeLen),
		limits.Text("grade", req.GetGrade(), limits.MaxCodeLen),
		limits.AtMost("net_grams", req.GetNetGrams(), limits.MaxNetGrams, "g"),
		limits.AtMost("price_fen_per_kg", req.GetPriceFenPerKg(), limits.MaxPriceFenPerKg, "fen/kg"),
	); err != nil {
		return time.Time{}, err
	}
	return limits.EventTime("weighed_at", req.GetWeighedAt(), now)
}

// checkCorrection checks CorrectDelivery's limits.
func checkCorrection(req *procurementv1.CorrectDeliveryRequest) error {
	errs := []error{
		limits.AtMost("net_grams", req.GetNetGrams(), limits.MaxNetGrams, "g"),
		limits.Text("grade", req.GetGrade(), limits.MaxCodeLen),
		limits.Text("reason", req.GetReason(), limits.MaxTextLen),
	}
	if req.PriceFenPerKg != nil {
		errs = append(errs, limits.AtMost("price_fen_per_kg", req.GetPriceFenPerKg(), limits.MaxPriceFenPerKg, "fen/kg"))
	}
	return firstErr(errs...)
}
