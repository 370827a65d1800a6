package ident_test

import (
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"F1", "farmer_001", "qinglong-chestnut-7", strings.Repeat("a", 64)} {
		if err := ident.Check("farmer_id", id); err != nil {
			t.Errorf("Check(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "a.b", "a*", "a>", "a b", strings.Repeat("a", 65), "农民"} {
		err := ident.Check("farmer_id", id)
		if failure.KindOf(err) != failure.KindInvalid || !strings.Contains(err.Error(), "farmer_id") {
			t.Errorf("Check(%q) = %v, want invalid naming farmer_id", id, err)
		}
	}
}

func TestCheckRequestID(t *testing.T) {
	t.Parallel()
	if err := ident.CheckRequestID("platform:order:123/4"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "a b", strings.Repeat("x", 201), "tab\t"} {
		if failure.KindOf(ident.CheckRequestID(id)) != failure.KindInvalid {
			t.Errorf("CheckRequestID(%q) accepted", id)
		}
	}
}
