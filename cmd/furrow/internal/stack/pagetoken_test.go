package stack_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

// TestPageTokenIsBoundToTheRequestsFilters: a next_page_token goes on only
// the list and filters it was returned for. Paging Xunwu's farmers and
// handing the token to a Qinglong listing would otherwise resume Qinglong
// after a Xunwu farmer's id — silently skipping Qinglong's first farmers.
func TestPageTokenIsBoundToTheRequestsFilters(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	finRegister(t, c, "A1", "Xunwu", "Navel Co-op", "1")
	finRegister(t, c, "A2", "Qinglong", "Chestnut Co-op", "2")
	finRegister(t, c, "A3", "Xunwu", "Navel Co-op", "3")
	finRegister(t, c, "A4", "Qinglong", "Chestnut Co-op", "4")
	head := finLedgerHead(t, c)

	first, err := c.ledger.ListFarmers(testCtx(t), &ledgerv1.ListFarmersRequest{County: "Xunwu", PageSize: 1, MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	token := first.GetNextPageToken()
	if token == "" {
		t.Fatal("Xunwu's first page of one has no next_page_token")
	}
	// The token goes on with the filters it was returned for.
	next, err := c.ledger.ListFarmers(testCtx(t), &ledgerv1.ListFarmersRequest{County: "Xunwu", PageSize: 1, PageToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(next.GetFarmers()); !cmp.Equal(got, []string{"A3"}) {
		t.Fatalf("Xunwu's second page = %v, want [A3]", got)
	}

	for _, tc := range []struct {
		name string
		req  *ledgerv1.ListFarmersRequest
	}{
		{"another county", &ledgerv1.ListFarmersRequest{County: "Qinglong", PageToken: token}},
		{"a filter added", &ledgerv1.ListFarmersRequest{County: "Xunwu", Cooperative: "Navel Co-op", PageToken: token}},
		{"a filter dropped", &ledgerv1.ListFarmersRequest{PageToken: token}},
		{"a payouts listing", nil},
		{"truncated", &ledgerv1.ListFarmersRequest{County: "Xunwu", PageToken: token[:len(token)-3]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.req == nil {
				_, err = c.ledger.ListPayouts(testCtx(t), &ledgerv1.ListPayoutsRequest{PageToken: token})
			} else {
				var res *ledgerv1.ListFarmersResponse
				res, err = c.ledger.ListFarmers(testCtx(t), tc.req)
				if err == nil {
					t.Fatalf("accepted: listed %v", ids(res.GetFarmers()))
				}
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "page_token") {
				t.Fatalf("%v, want InvalidArgument naming page_token", err)
			}
		})
	}
}

func ids(fs []*ledgerv1.Farmer) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetFarmerId())
	}
	return out
}
