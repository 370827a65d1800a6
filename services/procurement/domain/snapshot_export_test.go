package domain

// DeliveryLine is an order's delivery state, for the snapshot schema's
// field check.
type DeliveryLine = line
