package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// grafanaDir holds the dashboard and the alert rules.
var grafanaDir = filepath.Join(repoRoot, "deploy", "grafana")

// dashboardQueries returns every PromQL expression of a Grafana dashboard:
// the panels' targets and the template variables' queries.
func dashboardQueries(t testing.TB, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			if key == "expr" || key == "definition" {
				out = append(out, v)
			}
		}
	}
	walk("", doc)
	return out
}

// ruleQueries returns the expressions of a Prometheus rules file.
func ruleQueries(t testing.TB, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Expr == "" {
				t.Errorf("%s: rule %s has no expr", file, r.Alert)
			}
			out = append(out, r.Expr)
		}
	}
	return out
}

var (
	// Parts of PromQL that are not metric names: label matchers, label
	// lists of by/without/on/ignoring/group_*, ranges, strings.
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promLabelList = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRange     = regexp.MustCompile(`\[[^\]]*\]`)
	promString    = regexp.MustCompile(`"[^"]*"`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	// label_values(metric, label): the label is not a metric.
	promLabelValues = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_]+\s*\)`)
)

// promKeywords are PromQL words that are neither functions nor metrics.
var promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "le": true, "inf": true, "nan": true}

// metricsIn returns the metric names a PromQL expression (or a Grafana
// label_values query) reads.
func metricsIn(expr string) []string {
	expr = promLabelValues.ReplaceAllString(expr, "$1")
	for _, re := range []*regexp.Regexp{promString, promMatchers, promLabelList, promRange} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range promIdent.FindAllString(expr, -1) {
		if strings.HasSuffix(m, "(") || promKeywords[strings.ToLower(m)] || strings.HasPrefix(m, "$") {
			continue // a function call, or a keyword
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func TestMetricsIn(t *testing.T) {
	got := metricsIn(`sum by (le, rpc_method) (rate(rpc_server_call_duration_seconds_bucket{service_name=~"$service",x!="OK"}[$__rate_interval])) / on(a) max(furrow_deadletter_letters) > 0.5 and label_values(furrow_projection_healthy, service_name)`)
	want := []string{"rpc_server_call_duration_seconds_bucket", "furrow_deadletter_letters", "furrow_projection_healthy"}
	if !slices.Equal(got, want) {
		t.Errorf("metricsIn = %q, want %q", got, want)
	}
}

// families reads a Prometheus text exposition's metric names, a
// histogram's _bucket, _sum and _count also as its family.
func families(exposition string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(exposition) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		out[name] = true
	}
	return out
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The dashboard and the alert rules query only metrics the binaries
// export: every name is on a running furrow dev's /metrics (the production
// binaries serve the same OpenTelemetry series; cmd/furrow's prodtest
// checks that) once it has served calls, appended, handled events and
// computed a trial balance.
func TestGrafanaQueriesExportedMetrics(t *testing.T) {
	queried := map[string][]string{} // metric → where
	for _, q := range dashboardQueries(t, filepath.Join(grafanaDir, "furrow-dashboard.json")) {
		for _, m := range metricsIn(q) {
			queried[m] = append(queried[m], "dashboard")
		}
	}
	for _, q := range ruleQueries(t, filepath.Join(grafanaDir, "alerts.yml")) {
		for _, m := range metricsIn(q) {
			queried[m] = append(queried[m], "alerts.yml")
		}
	}
	// What the issue asks the dashboard and rules to cover.
	for _, must := range []string{"rpc_server_call_duration_seconds_count", "furrow_eventstore_append_duration_seconds_bucket",
		"furrow_handler_messages_total", "furrow_projection_lag_events", "furrow_projection_healthy",
		"furrow_deadletter_letters", "furrow_ledger_trial_balance_difference"} {
		if queried[must] == nil {
			t.Errorf("neither the dashboard nor the rules query %s", must)
		}
	}

	furrow := binaries(t)["furrow"]
	grpcAddr, opsAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev := exec.CommandContext(ctx, furrow, "dev", "--demo", "--data-dir", t.TempDir(), "--grpc-addr", grpcAddr,
		"--nats-addr", "", "--http-addr", "", "--ops-addr", opsAddr)
	out := &syncBuffer{}
	dev.Stdout, dev.Stderr = out, out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dev.Process.Signal(os.Interrupt)
		_ = dev.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Furrow dev is running.") {
		if time.Now().After(deadline) {
			t.Fatalf("furrow dev did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tb, err := exec.Command(furrow, "ledger", "trial-balance", "--addr", grpcAddr).CombinedOutput(); err != nil {
		t.Fatalf("furrow ledger trial-balance: %v\n%s", err, tb)
	}

	var missing []string
	for {
		resp, err := http.Get("http://" + opsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		have := families(string(body))
		missing = missing[:0]
		for m := range queried {
			if !have[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			for _, m := range missing {
				t.Errorf("%s queries %s, which furrow dev's /metrics does not export", strings.Join(queried[m], " and "), m)
			}
			t.Logf("/metrics:\n%s", body)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d metrics queried, all exported", len(queried))
}

// syncBuffer is a bytes.Buffer the child's output copiers and the test
// may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
