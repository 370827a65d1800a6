package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/furrow/furrow/cmd/furrow", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0f832bf1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7"},
			{Key: "vcs.time", Value: "2026-12-03T08:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"checkout", bi, "furrow (devel), revision 0f832bf1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7 (modified), committed 2026-12-03T08:00:00Z, go1.26.0 " + platform},
		{"no VCS", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}}, "furrow v1.2.3, revision unknown, go1.26.0 " + platform},
		{"no build info", nil, "furrow dev, revision unknown, " + runtime.Version() + " " + platform},
	} {
		if got := versionText(tc.bi); got != tc.want {
			t.Errorf("%s: versionText() =\n  %q, want\n  %q", tc.name, got, tc.want)
		}
	}
}

// Issue 9, defect 10: `furrow --version` was an unknown command and
// `furrow version` printed only "furrow dev".
func TestVersionCommands(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "version"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, &stderr, func(string) string { return "" }); err != nil {
			t.Fatalf("furrow %s: %v\n%s", arg, err, stderr.String())
		}
		if got := stdout.String(); !strings.HasPrefix(got, "furrow ") || !strings.Contains(got, runtime.Version()) || !strings.Contains(got, "revision ") {
			t.Errorf("furrow %s printed %q, want the version, revision and Go version", arg, got)
		}
	}
}
