package doctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	doc := "# Title\n" +
		"<!-- doctest: dev --demo -->\n" +
		"<!-- doctest: requires sqlite3 -->\n" +
		"See [the guide](docs/guide.md) and [the web](https://example.com).\n" +
		"```sh\n" +
		"echo one\n" +
		"```\n" +
		"\n" +
		"```text\n" +
		"one\n" +
		"```\n" +
		"<!-- doctest: skip (needs docker) -->\n" +
		"```sh\n" +
		"make up\n" +
		"```\n" +
		"```\n" +
		"not shell\n" +
		"```\n" +
		"```sh\n" +
		"true\n" +
		"```\n" +
		"prose\n" +
		"```text\n" +
		"a text block after prose is no block's output\n" +
		"```\n"
	d, err := Parse("x.md", doc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"--demo"}, d.DevFlags); diff != "" {
		t.Errorf("DevFlags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"sqlite3"}, d.Requires); diff != "" {
		t.Errorf("Requires (-want +got):\n%s", diff)
	}
	want := []Block{
		{Line: 5, Script: "echo one\n", Expected: "one", HasExpected: true, ExpectedStart: 9, ExpectedEnd: 10},
		{Line: 13, Script: "make up\n", Skip: "needs docker"},
		{Line: 19, Script: "true\n"},
	}
	if diff := cmp.Diff(want, d.Blocks); diff != "" {
		t.Errorf("Blocks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Link{{Line: 4, Target: "docs/guide.md"}, {Line: 4, Target: "https://example.com"}}, d.Links); diff != "" {
		t.Errorf("Links (-want +got):\n%s", diff)
	}
	got := d.Rewrite(map[int]string{0: "two\nlines"})
	if !strings.Contains(got, "```text\ntwo\nlines\n```\n<!-- doctest: skip") {
		t.Errorf("Rewrite did not replace the first output:\n%s", got)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"console block":         "```console\n$ ls\n```\n",
		"bash block":            "```bash\nls\n```\n",
		"untyped session":       "```\n$ ls\nREADME.md\n```\n",
		"unclosed fence":        "```sh\nls\n",
		"unknown directive":     "<!-- doctest: sometimes -->\n```sh\nls\n```\n",
		"skip before text":      "<!-- doctest: skip (why) -->\n```text\nx\n```\n",
		"skip without reason":   "<!-- doctest: skip -->\n```sh\nls\n```\n",
		"skip not right before": "<!-- doctest: skip (why) -->\nprose\n```sh\nls\n```\n",
		"dev after first block": "```sh\nls\n```\n<!-- doctest: dev --demo -->\n",
	} {
		if _, err := Parse("x.md", doc); err == nil {
			t.Errorf("%s: Parse accepted\n%s", name, doc)
		}
	}
}

func TestMatch(t *testing.T) {
	got := []string{"{", `  "a": "1",`, `  "b": "2",`, `  "c": "3"`, "}"}
	for _, tc := range []struct {
		name       string
		want       []string
		ok         bool
		wantLine   int
		actualLine int
	}{
		{name: "exact", want: got, ok: true},
		{name: "line ellipsis for several lines", want: []string{"{", "…", "}"}, ok: true},
		{name: "line ellipsis for no line", want: []string{"{", `  "a": "1",`, "…", `  "b": "2",`, `  "c": "3"`, "}"}, ok: true},
		{name: "trailing ellipsis is a prefix match", want: []string{"{", `  "a": "1",`, "…"}, ok: true},
		{name: "ellipsis inside a line", want: []string{"{", `  "a": …,`, `  "b": "…`, `…"3"`, "}"}, ok: true},
		{name: "changed line", want: []string{"{", `  "a": "1",`, `  "b": "7",`, `  "c": "3"`, "}"}, wantLine: 2, actualLine: 2},
		{name: "missing line", want: []string{"{", `  "a": "1",`, `  "c": "3"`, "}"}, wantLine: 2, actualLine: 2},
		{name: "extra documented line", want: append(append([]string{}, got...), "more"), wantLine: 5, actualLine: 5},
		{name: "output longer than documented", want: got[:4], wantLine: 4, actualLine: 4},
		{name: "ellipsis inside a line is one line", want: []string{"{…}"}, wantLine: 0, actualLine: 0},
	} {
		m := Match(tc.want, got)
		if tc.ok {
			if m != nil {
				t.Errorf("%s: mismatch at want %d, got %d", tc.name, m.WantLine, m.GotLine)
			}
			continue
		}
		if m == nil {
			t.Errorf("%s: matched, want a mismatch", tc.name)
			continue
		}
		if m.WantLine != tc.wantLine || m.GotLine != tc.actualLine {
			t.Errorf("%s: mismatch at want line %d / output line %d, want %d / %d", tc.name, m.WantLine, m.GotLine, tc.wantLine, tc.actualLine)
		}
	}
}

// TestNormalise shows each rule at work, once from each side: what the
// documents held when they were written and what a later run prints.
func TestNormalise(t *testing.T) {
	cases := map[string][2]string{
		"time":            {`"requestedAt": "2026-11-28T11:41:53.231266186Z",`, `"requestedAt": "2027-01-02T00:00:01Z",`},
		"date":            {"Reconciliation of settlement-2026-11-28.csv", "Reconciliation of settlement-2027-01-02.csv"},
		"duration":        {"Last stored:  2026-11-28 11:47:12Z (524ms ago)", "Last stored:  2026-11-28 11:47:12Z (2m4s ago)"},
		"rate":            {"  v2: 4/4 events (100%), 2,344/s, caught up", "  v2: 4/4 events (100%), 5/s, caught up"},
		"size":            {"Messages:  4 (2.9 KiB)", "Messages:  4 (913 B)"},
		"consumer":        {"  7lkK6xT3lJKAANfWEyJcW0_1  ledger.>", "  DytzdGgqz7y7Lo2FUPaJAM_1  ledger.>"},
		"protojson-comma": {`{"farmer_id":"F-1002", "payout_account":"6222", "n":[1, 2]}`, `{"farmer_id":"F-1002","payout_account":"6222","n":[1,2]}`},
		"protojson-colon": {`  "farmerId":  "F1",`, `  "farmerId": "F1",`},
		"padding":         {"LEDGER  ledger.>       4         2.9 KiB", "LEDGER       ledger.>  4  2.9 KiB"},
	}
	for _, r := range Rules {
		c, ok := cases[r.Name]
		if !ok {
			t.Errorf("rule %s has no example here", r.Name)
			continue
		}
		if a, b := Normalise(c[0]), Normalise(c[1]); !cmp.Equal(a, b) {
			t.Errorf("rule %s: %q and %q normalise differently (-first +second):\n%s", r.Name, c[0], c[1], cmp.Diff(a, b))
		}
		if r.RE.ReplaceAllString(c[0], r.Repl) == c[0] {
			t.Errorf("rule %s does not change its example %q", r.Name, c[0])
		}
	}
	// What no rule covers stays as it is: amounts, ids, sequences, statuses.
	for _, s := range []string{
		`    "sequence": "9"`, `  "amountFen": "8395",`, "PO-wang-fang-1  SIM-2D089D12B751  100.00 settled",
		`"deliveryId": "Oc6d35f29b5fe0382d958-D040173d2e2246c27339b",`, "Break Bf851eb8fd5baed4e resolved (accepted) at LEDGER:22.",
		"the file says 10001 CNY, the ledger 10000 CNY (difference +1 fen)",
	} {
		if got := Normalise(s); len(got) != 1 || got[0] != s {
			t.Errorf("Normalise(%q) = %q, want it unchanged", s, got)
		}
	}
}

// TestBlockState checks that blocks of one document share variables,
// exports and the working directory, and report their exit status.
func TestBlockState(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash:", err)
	}
	dir, private := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(private, "state.sh")
	env := blockEnv(filepath.Join(private, "home"))
	steps := []struct {
		script, out string
		code        int
	}{
		{"X='a b'\nexport Y=1\ncd sub\necho first\n", "first\n", 0},
		{"echo \"$X/$Y/$(basename \"$PWD\")\"\nbash -c 'echo child sees Y=$Y'\n", "a b/1/sub\nchild sees Y=1\n", 0},
		{"echo out; echo err >&2; false; echo never\n", "out\nerr\n", 1},
		{"echo \"$X after a failure\"\n", "a b after a failure\n", 0},
		{"echo $UNSET\n", "", 1}, // -u
	}
	for i, s := range steps {
		out, code, err := runBlock(dir, private, state, env, s.script)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if code != s.code || (s.out != "" && out != s.out) {
			t.Errorf("step %d: got %q, exit %d; want %q, exit %d", i, out, code, s.out, s.code)
		}
	}
}
