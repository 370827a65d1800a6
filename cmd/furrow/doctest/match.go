package doctest

import (
	"fmt"
	"regexp"
	"strings"
)

// Ellipsis abbreviates documented output: inside a line it stands for any
// text on that line; a line that is only an ellipsis stands for any number of
// lines (none included), so a last line "…" makes the block a prefix match.
const Ellipsis = "…"

// Mismatch says where documented and actual output part.
type Mismatch struct {
	// WantLine is the 0-based index of the first documented line that could
	// not be matched (len(want) when the actual output has extra lines).
	WantLine int
	// GotLine is the actual line it was compared with (len(got) when the
	// actual output ended first).
	GotLine int
	Want    []string
	Got     []string
}

// WantText is the documented line where matching stopped, quoted, or
// "(end of documented output)".
func (m *Mismatch) WantText() string {
	if m.WantLine < len(m.Want) {
		return fmt.Sprintf("%q", m.Want[m.WantLine])
	}
	return "(end of documented output)"
}

// GotText is the actual line it was compared with, quoted, or "(end of
// output)".
func (m *Mismatch) GotText() string {
	if m.GotLine < len(m.Got) {
		return fmt.Sprintf("%q", m.Got[m.GotLine])
	}
	return "(end of output)"
}

// Match compares normalised documented lines with normalised actual lines,
// honouring ellipses. It returns nil when they match.
func Match(want, got []string) *Mismatch {
	pats := make([]*regexp.Regexp, len(want))
	for i, w := range want {
		if strings.Contains(w, Ellipsis) && strings.TrimSpace(w) != Ellipsis {
			parts := strings.Split(w, Ellipsis)
			for k := range parts {
				parts[k] = regexp.QuoteMeta(parts[k])
			}
			pats[i] = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		}
	}
	lineOK := func(i, j int) bool {
		if pats[i] != nil {
			return pats[i].MatchString(got[j])
		}
		return want[i] == got[j]
	}
	// Memoised search over (want line, got line); the failure reported is the
	// one that got furthest into the documented output.
	type key struct{ i, j int }
	failed := map[key]bool{}
	best := key{-1, -1}
	var walk func(i, j int) bool
	walk = func(i, j int) bool {
		k := key{i, j}
		if failed[k] {
			return false
		}
		if i > best.i || (i == best.i && j > best.j) {
			best = k
		}
		switch {
		case i == len(want):
			if j == len(got) {
				return true
			}
		case strings.TrimSpace(want[i]) == Ellipsis:
			for jj := j; jj <= len(got); jj++ {
				if walk(i+1, jj) {
					return true
				}
			}
		case j < len(got) && lineOK(i, j):
			if walk(i+1, j+1) {
				return true
			}
		}
		failed[k] = true
		return false
	}
	if walk(0, 0) {
		return nil
	}
	return &Mismatch{WantLine: best.i, GotLine: best.j, Want: want, Got: got}
}
