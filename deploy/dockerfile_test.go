package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// workModules returns the module directories go.work uses ("pkg",
// "services/procurement", …).
func workModules(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "use "))
		if strings.HasPrefix(line, "./") {
			mods = append(mods, strings.TrimSuffix(strings.TrimPrefix(line, "./"), "/"))
		}
	}
	if len(mods) == 0 {
		t.Fatal("go.work: no module found in its use block")
	}
	return mods
}

var copyModule = regexp.MustCompile(`(?m)^COPY\s+(\S+)/go\.mod\s+(\S+)/go\.sum\s+(\S+?)/?\s*$`)

// dockerfileMissingModules returns the modules whose go.mod and go.sum a
// Dockerfile does not copy before its `go mod download`: in workspace mode
// that step fails when go.work names a module directory that is not there.
func dockerfileMissingModules(dockerfile string, modules []string) []string {
	download := strings.Index(dockerfile, "go mod download")
	if download < 0 {
		return []string{"(no go mod download step)"}
	}
	copied := map[string]bool{}
	for _, m := range copyModule.FindAllStringSubmatch(dockerfile[:download], -1) {
		if m[1] == m[2] && m[2] == m[3] {
			copied[m[1]] = true
		}
	}
	var missing []string
	for _, mod := range modules {
		if !copied[mod] {
			missing = append(missing, mod)
		}
	}
	return missing
}

// TestDockerfileCopiesEveryModule checks that deploy/Dockerfile copies the
// go.mod and go.sum of every module go.work names before it downloads
// them (this module included), and that the check notices one left out.
func TestDockerfileCopiesEveryModule(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mods := workModules(t)
	if missing := dockerfileMissingModules(string(b), mods); len(missing) > 0 {
		t.Errorf("deploy/Dockerfile does not copy the go.mod and go.sum of %v before go mod download (go.work uses them)", missing)
	}
	line := "COPY deploy/go.mod deploy/go.sum deploy/\n"
	if !strings.Contains(string(b), line) {
		t.Fatalf("deploy/Dockerfile has no line %q to take out", line)
	}
	broken := strings.Replace(string(b), line, "", 1)
	if got := fmt.Sprint(dockerfileMissingModules(broken, mods)); got != "[deploy]" {
		t.Errorf("without %q the check finds %s missing, want [deploy]", strings.TrimSpace(line), got)
	}
}
