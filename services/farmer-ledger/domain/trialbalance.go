package domain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/furrow/furrow/pkg/money"
)

// AccountTotal is the sum of one account's debits and credits.
type AccountTotal struct {
	Account   string
	DebitFen  int64
	CreditFen int64
}

// BalanceFen is debits minus credits. NewTrialBalance checks that it fits
// in an int64 for every account it returns.
func (a AccountTotal) BalanceFen() int64 { return a.DebitFen - a.CreditFen }

// TrialBalance is every account's totals and their sums. The journal is
// sound when the sums agree.
type TrialBalance struct {
	Accounts  []AccountTotal
	DebitFen  int64
	CreditFen int64
}

// Balanced reports whether Σ debits = Σ credits.
func (t TrialBalance) Balanced() bool { return t.DebitFen == t.CreditFen }

// NewTrialBalance sums accounts, ordered by account code. With byFarmer
// false, farmers' accounts are summed per kind ("farmer:*:payable"), which
// keeps the report readable whatever the number of farmers. A sum that
// overflows is an error rather than a wrapped, plausible number.
func NewTrialBalance(accounts []AccountTotal, byFarmer bool) (TrialBalance, error) {
	merged := map[string]*AccountTotal{}
	var tb TrialBalance
	for _, a := range accounts {
		code := a.Account
		if !byFarmer {
			code = GroupAccount(code)
		}
		m := merged[code]
		if m == nil {
			m = &AccountTotal{Account: code}
			merged[code] = m
		}
		var err error
		if m.DebitFen, err = money.Add(m.DebitFen, a.DebitFen); err != nil {
			return TrialBalance{}, fmt.Errorf("trial balance of %s: %w", code, err)
		}
		if m.CreditFen, err = money.Add(m.CreditFen, a.CreditFen); err != nil {
			return TrialBalance{}, fmt.Errorf("trial balance of %s: %w", code, err)
		}
		if tb.DebitFen, err = money.Add(tb.DebitFen, a.DebitFen); err != nil {
			return TrialBalance{}, fmt.Errorf("trial balance: total debits: %w", err)
		}
		if tb.CreditFen, err = money.Add(tb.CreditFen, a.CreditFen); err != nil {
			return TrialBalance{}, fmt.Errorf("trial balance: total credits: %w", err)
		}
	}
	for _, m := range merged {
		if _, err := money.Sub(m.DebitFen, m.CreditFen); err != nil {
			return TrialBalance{}, fmt.Errorf("trial balance of %s: balance: %w", m.Account, err)
		}
		tb.Accounts = append(tb.Accounts, *m)
	}
	slices.SortFunc(tb.Accounts, func(a, b AccountTotal) int { return cmp.Compare(a.Account, b.Account) })
	return tb, nil
}

// GroupAccount turns a farmer's account code into its kind's group code
// ("farmer:F1:held" → "farmer:*:held"); other codes are returned as they are.
func GroupAccount(code string) string {
	rest, ok := strings.CutPrefix(code, "farmer:")
	if !ok {
		return code
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return code
	}
	return "farmer:*:" + rest[i+1:]
}
