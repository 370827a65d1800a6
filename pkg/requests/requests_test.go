package requests_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/requests"
)

// TestRegistry: a request id recorded for a method with one fingerprint is
// refused with another (ALREADY_EXISTS wrapping ErrIdempotencyMismatch),
// accepted with the same (a retry), and independent of other methods; the
// first record stands; ids never recorded pass.
func TestRegistry(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := natstest.Embedded(t).JetStream(t)
	reg, err := requests.Open(ctx, js, "TEST", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const m = "/furrow.ledger.v1.LedgerService/RegisterFarmer"
	if err := reg.Check(ctx, m, "r 1/ü", "fp-a"); err != nil {
		t.Fatalf("an id never recorded: %v", err)
	}
	if err := reg.Record(ctx, m, "r 1/ü", "fp-a"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(ctx, m, "r 1/ü", "fp-a"); err != nil {
		t.Fatalf("a retry: %v", err)
	}
	err = reg.Check(ctx, m, "r 1/ü", "fp-b")
	if failure.KindOf(err) != failure.KindAlreadyExists || !errors.Is(err, eventstore.ErrIdempotencyMismatch) {
		t.Fatalf("the id with other content: %v, want ALREADY_EXISTS", err)
	}
	if err := reg.Record(ctx, m, "r 1/ü", "fp-b"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(ctx, m, "r 1/ü", "fp-a"); err != nil {
		t.Fatalf("the first record must stand: %v", err)
	}
	if err := reg.Check(ctx, "/furrow.ledger.v1.LedgerService/RequestPayout", "r 1/ü", "fp-b"); err != nil {
		t.Fatalf("another method's id space: %v", err)
	}
}
