package doctest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The documented default addresses furrow dev listens on; the documents call
// them, so the runner starts furrow dev there.
var devAddrs = []string{"127.0.0.1:7070", "127.0.0.1:4222"}

const (
	// updateEnv, set to 1, rewrites the documented output of every block
	// whose output differs with what it printed (review with git diff).
	updateEnv = "FURROW_DOCTEST_UPDATE"
	// blockTimeout bounds one block; devReadyTimeout the start of furrow dev.
	blockTimeout    = 2 * time.Minute
	devReadyTimeout = 90 * time.Second
	// scratchShown is what the scratch directory's absolute path is printed as.
	scratchShown = "/path/to/furrow"
)

var (
	furrowBin string // built in TestMain
	repoRoot  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		root, err := findRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		repoRoot = root
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "furrow-doctest")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		furrowBin = filepath.Join(dir, "furrow")
		build := exec.Command("go", "build", "-o", furrowBin, "github.com/furrow/furrow/cmd/furrow")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build furrow:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// findRoot walks up from the package directory to the directory holding go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("doctest: no go.work above the package directory")
		}
		dir = parent
	}
}

// documents lists README.md and docs/*.md, relative to the repository root.
func documents(t testing.TB) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"README.md"}
	for _, d := range docs {
		names = append(names, filepath.Join("docs", filepath.Base(d)))
	}
	slices.Sort(names[1:])
	return names
}

func parseDoc(t testing.TB, name string) *Document {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(name, string(text))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLinks checks that every relative link in the documents names a file or
// directory that exists.
func TestLinks(t *testing.T) {
	for _, name := range documents(t) {
		d := parseDoc(t, name)
		for _, l := range d.Links {
			target := l.Target
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			path := filepath.Join(repoRoot, filepath.Dir(name), target)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s:%d: broken link %q: %s does not exist", name, l.Line, l.Target, strings.TrimPrefix(path, repoRoot+"/"))
			}
		}
	}
}

// TestDocs runs the shell blocks of every document, one document after the
// other, each against its own fresh furrow dev, and compares their output
// with the documented output.
func TestDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("doc tests start furrow dev")
	}
	tools := map[string]string{"furrow": furrowBin}
	for _, tool := range []string{"grpcurl", "nats"} {
		tools[tool] = filepath.Join(repoRoot, "bin", tool)
	}
	for tool, path := range tools {
		if _, err := os.Stat(path); err != nil {
			msg := fmt.Sprintf("%s is missing (%v): make cli-tools installs grpcurl and nats into ./bin", tool, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("the documents' blocks run with bash: %v", err)
	}
	update := os.Getenv(updateEnv) == "1"
	for _, name := range documents(t) {
		t.Run(name, func(t *testing.T) { runDocument(t, parseDoc(t, name), tools, update) })
	}
}

func runDocument(t *testing.T, d *Document, tools map[string]string, update bool) {
	if len(d.Blocks) == 0 {
		t.Skipf("%s has no sh blocks", d.Name)
	}
	var skipped []string
	for _, b := range d.Blocks {
		if b.Skip != "" {
			skipped = append(skipped, fmt.Sprintf("%s:%d (%s)", d.Name, b.Line, b.Skip))
		}
	}
	if len(skipped) > 0 {
		t.Logf("%d of %d blocks skipped: %s", len(skipped), len(d.Blocks), strings.Join(skipped, "; "))
	}
	if len(skipped) == len(d.Blocks) {
		return
	}

	// The scratch directory is what a fresh clone looks like to the
	// commands: bin/ holds furrow (make build) and grpcurl and nats (make
	// cli-tools); furrow dev keeps its data in .furrow there.
	scratch := t.TempDir()
	if err := os.Mkdir(filepath.Join(scratch, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for tool, path := range tools {
		if err := os.Symlink(path, filepath.Join(scratch, "bin", tool)); err != nil {
			t.Fatal(err)
		}
	}
	private := t.TempDir() // the runner's files, out of the commands' sight
	home := filepath.Join(private, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := blockEnv(home)
	for _, tool := range d.Requires {
		if !onPath(env, tool) {
			msg := fmt.Sprintf("%s needs %s, which is not installed", d.Name, tool)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}

	dev := startDev(t, scratch, env, d.DevFlags)
	state := filepath.Join(private, "state.sh")
	updates := map[int]string{}
	for i, b := range d.Blocks {
		if b.Skip != "" {
			continue
		}
		out, code, err := runBlock(scratch, private, state, env, b.Script)
		if err != nil {
			t.Fatalf("%s:%d: %v\noutput:\n%s%s", d.Name, b.Line, err, out, dev.tail())
		}
		out = strings.ReplaceAll(out, scratch, scratchShown)
		if resolved, err := filepath.EvalSymlinks(scratch); err == nil && resolved != scratch {
			out = strings.ReplaceAll(out, resolved, scratchShown)
		}
		if code != 0 {
			out = strings.TrimRight(out, "\n") + fmt.Sprintf("\n(exit %d)", code)
		}
		// A block without a text block after it documents that it prints nothing.
		want, got := Normalise(b.Expected), Normalise(out)
		m := Match(want, got)
		if m == nil {
			continue
		}
		if update && b.HasExpected {
			updates[i] = strings.TrimRight(out, "\n")
			continue
		}
		if !b.HasExpected {
			t.Errorf("%s:%d: block %d has no ```text block after it, so it must print nothing; it printed:\n%s", d.Name, b.Line, i+1, out)
			continue
		}
		t.Errorf("%s:%d: block %d: output differs from the documented output\n"+
			"  %s:%d: want %s\n"+
			"  output line %d: got %s\n"+
			"normalised (-want +got):\n%s",
			d.Name, b.Line, i+1,
			d.Name, b.ExpectedStart+1+min(m.WantLine, len(m.Want)), m.WantText(),
			m.GotLine+1, m.GotText(),
			cmp.Diff(want, got))
	}
	dev.stop(t)
	if t.Failed() {
		t.Logf("furrow dev output:%s", dev.tail())
	}
	t.Logf("%d blocks run and compared, %d skipped", len(d.Blocks)-len(skipped), len(skipped))
	if update && len(updates) > 0 {
		path := filepath.Join(repoRoot, d.Name)
		if err := os.WriteFile(path, []byte(d.Rewrite(updates)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s=1: rewrote the documented output of %d blocks in %s; review with git diff", updateEnv, len(updates), d.Name)
	}
}

// blockEnv is the environment the blocks run in: the test's, without
// FURROW_* settings, with HOME private (no nats contexts of the user), and
// with no PATH entry that provides furrow, grpcurl or nats, so a document
// that forgets `export PATH=$PWD/bin:$PATH` fails here as on a fresh clone.
func blockEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "FURROW_"), k == "HOME", k == "XDG_CONFIG_HOME", k == "NATS_CONTEXT", k == "NATS_URL":
			continue
		case k == "PATH":
			var keep []string
			for _, dir := range filepath.SplitList(v) {
				if !providesTool(dir) {
					keep = append(keep, dir)
				}
			}
			kv = "PATH=" + strings.Join(keep, string(os.PathListSeparator))
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// onPath reports whether the PATH in env holds an executable named tool.
func onPath(env []string, tool string) bool {
	for _, kv := range env {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range filepath.SplitList(path) {
				if fi, err := os.Stat(filepath.Join(dir, tool)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					return true
				}
			}
		}
	}
	return false
}

func providesTool(dir string) bool {
	for _, tool := range []string{"furrow", "grpcurl", "nats"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err == nil {
			return true
		}
	}
	return false
}

// blockPrelude runs before each block: it restores the variables and the
// working directory the previous blocks of the document left, and saves them
// again when the block exits, however it exits.
const blockPrelude = `__doctest_state=%q
if [ -f "$__doctest_state" ]; then . "$__doctest_state"; fi
__doctest_save() {
  set +eu
  local __doctest_v __doctest_d
  {
    for __doctest_v in $(compgen -v); do
      case $__doctest_v in
        BASH*|EUID|UID|PPID|SHELLOPTS|FUNCNAME|GROUPS|RANDOM|SRANDOM|SECONDS|LINENO|HISTCMD|DIRSTACK|PIPESTATUS|EPOCHREALTIME|EPOCHSECONDS|OPTIND|OPTARG|OPTERR|PWD|OLDPWD|SHLVL|_|__doctest_*|COLUMNS|LINES|IFS|PS4) continue ;;
      esac
      __doctest_d=$(declare -p "$__doctest_v" 2>/dev/null) || continue
      [[ $__doctest_d =~ ^declare\ -[a-zA-Z]*r ]] && continue
      printf '%%s\n' "$__doctest_d"
    done
    printf 'cd %%q\n' "$PWD"
  } >"$__doctest_state"
}
trap __doctest_save EXIT
`

// runBlock runs one block with bash -euo pipefail in dir and returns its
// output (stdout and stderr as a terminal would interleave them) and exit status.
func runBlock(dir, private, state string, env []string, script string) (string, int, error) {
	file := filepath.Join(private, "block.sh")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(blockPrelude, state)+script), 0o644); err != nil {
		return "", 0, err
	}
	outFile, err := os.Create(filepath.Join(private, "block.out"))
	if err != nil {
		return "", 0, err
	}
	defer outFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", file)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = outFile, outFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	runErr := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the block left running
	}
	out, err := os.ReadFile(outFile.Name())
	if err != nil {
		return "", 0, err
	}
	if ctx.Err() != nil {
		return string(out), 0, fmt.Errorf("block did not finish in %v", blockTimeout)
	}
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		return string(out), exit.ExitCode(), nil
	}
	return string(out), 0, runErr
}

// devProc is the furrow dev a document runs against.
type devProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
	done chan error
}

func (p *devProc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.out[max(0, len(p.out)-40):]
	return "\n  | " + strings.Join(lines, "\n  | ")
}

// startDev starts bin/furrow dev in dir on the default addresses and waits
// for its banner (printed once it serves, after --demo data is loaded).
func startDev(t *testing.T, dir string, env, flags []string) *devProc {
	t.Helper()
	for _, addr := range devAddrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is taken (%v): the doc tests run furrow dev on the documented default addresses %s; stop what listens there (make run, another furrow dev) and run them again",
				addr, err, strings.Join(devAddrs, " and "))
		}
		l.Close()
	}
	p := &devProc{done: make(chan error, 1)}
	p.cmd = exec.Command(filepath.Join(dir, "bin", "furrow"), append([]string{"dev"}, flags...)...)
	p.cmd.Dir, p.cmd.Env = dir, env
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		seen := false
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
			if !seen && strings.HasPrefix(sc.Text(), "Furrow dev is running") {
				seen = true
				close(ready)
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
		return p
	case err := <-p.done:
		p.done <- err
		t.Fatalf("furrow dev %s exited before serving: %v%s", strings.Join(flags, " "), err, p.tail())
	case <-time.After(devReadyTimeout):
		t.Fatalf("furrow dev %s printed no banner in %v%s", strings.Join(flags, " "), devReadyTimeout, p.tail())
	}
	return nil
}

// stop interrupts furrow dev (Ctrl-C) and waits for it to exit.
func (p *devProc) stop(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Errorf("furrow dev exited while the document ran: %v%s", err, p.tail())
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("furrow dev after Ctrl-C: %v%s", err, p.tail())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("furrow dev did not stop within 30s of Ctrl-C%s", p.tail())
	}
}
