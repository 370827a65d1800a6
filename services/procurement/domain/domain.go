// Package domain holds procurement's aggregates and rules: direct-purchase
// programmes and their budgets, purchase orders and the deliveries weighed
// in against them, and ad-hoc deliveries. It does no I/O and reads no
// clock; aggregates are rebuilt only from their events, and every decision
// returns the events to append or a failure naming the offending field.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Stream is procurement's event stream and Subjects the subjects it holds.
const (
	Stream   = "PROCUREMENT"
	Subjects = "procurement.>"
)

// Event kinds (the last subject token). Other services filter on them
// (the ledger on procurement.*.*.delivery_recorded and
// procurement.*.*.delivery_corrected), so they never change.
const (
	KindProgramOpened     = "program_opened"
	KindProgramClosed     = "program_closed"
	KindBudgetReserved    = "budget_reserved"
	KindBudgetReleased    = "budget_released"
	KindOrderPlaced       = "order_placed"
	KindOrderCancelled    = "order_cancelled"
	KindDeliveryRecorded  = "delivery_recorded"
	KindDeliveryCorrected = "delivery_corrected"
)

// ProgramSubject is the subject of a programme's event of the given kind.
func ProgramSubject(programID, kind string) string {
	return "procurement.program." + programID + "." + kind
}

// ProgramAggregate is the subject filter covering a programme's events.
func ProgramAggregate(programID string) string { return "procurement.program." + programID + ".>" }

// OrderSubject is the subject of an order's event of the given kind.
func OrderSubject(orderID, kind string) string { return "procurement.order." + orderID + "." + kind }

// OrderAggregate is the subject filter covering an order's events.
func OrderAggregate(orderID string) string { return "procurement.order." + orderID + ".>" }

// DeliverySubject is the subject of an ad-hoc delivery's event of the given kind.
func DeliverySubject(deliveryID, kind string) string {
	return "procurement.delivery." + deliveryID + "." + kind
}

// DeliveryAggregate is the subject filter covering an ad-hoc delivery's events.
func DeliveryAggregate(deliveryID string) string { return "procurement.delivery." + deliveryID + ".>" }

// Change is one event to append and the subject it goes to. A command that
// touches two aggregates returns its changes in the order they must be
// appended: the first one's aggregate carries the concurrency expectation.
type Change struct {
	Subject string
	Event   proto.Message
}

// Farmer is what procurement needs to know of a farmer registered with the
// ledger (from the ledger's FarmerRegistered event).
type Farmer struct {
	ID          string
	Name        string
	County      string
	Cooperative string
}

// Ids derived from request ids: every retry of a request addresses the same
// aggregate, so a retry finds its first attempt, and two different requests
// never share an aggregate they both create.

// DeliveryIDFor is the id of the ad-hoc delivery recorded by requestID.
func DeliveryIDFor(requestID string) string {
	return "D" + digest("procurement.RecordDelivery:"+requestID)
}

// OrderIDFor is the id of the order placed by requestID.
func OrderIDFor(requestID string) string {
	return "O" + digest("procurement.PlaceOrder:"+requestID)
}

// OrderDeliveryID is the id of the delivery recorded by requestID against
// orderID. It starts with the order id, so the delivery's aggregate (the
// order) is found from its id alone, without an index that could lag.
func OrderDeliveryID(orderID, requestID string) string {
	return orderID + "-" + DeliveryIDFor(requestID)
}

// OrderOfDelivery returns the order a delivery id belongs to, or false for
// an ad-hoc delivery's id.
func OrderOfDelivery(deliveryID string) (string, bool) {
	order, rest, ok := strings.Cut(deliveryID, "-")
	if !ok || !strings.HasPrefix(order, "O") || !strings.HasPrefix(rest, "D") {
		return "", false
	}
	return order, true
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:10])
}
