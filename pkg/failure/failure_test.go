package failure_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/furrow/furrow/pkg/failure"
)

func TestKindSurvivesWrapping(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("record delivery: %w", failure.Invalid("net_grams", "must be positive, got %d", -5))
	if got := failure.KindOf(err); got != failure.KindInvalid {
		t.Fatalf("KindOf = %v, want invalid", got)
	}
	if got, want := err.Error(), "record delivery: net_grams: must be positive, got -5"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if failure.KindOf(errors.New("plain")) != 0 {
		t.Fatal("a plain error has a kind")
	}
}
