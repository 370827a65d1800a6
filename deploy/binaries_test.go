package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository this module sits in.
var repoRoot = func() string {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return root
}()

// imageBinDir is where deploy/Dockerfile puts every binary of the image.
const imageBinDir = "/usr/local/bin"

// furrowPackages are the Furrow binaries the image holds, by name, and the
// packages they are built from (the Makefile's build and build-services,
// deploy/Dockerfile). The image also holds nats-server, which is not
// Furrow's and is checked through its configuration instead.
var furrowPackages = map[string]string{
	"furrow":           "./cmd/furrow",
	"procurement":      "./services/procurement/cmd/procurement",
	"brand-incubation": "./services/brand-incubation/cmd/brand-incubation",
	"farmer-ledger":    "./services/farmer-ledger/cmd/farmer-ledger",
}

// pendingCommands are Furrow commands the deployment files already run but
// this build may not have yet, with the reason. A container running one of
// them is skipped (visibly: a SKIP line) while the built binary does not
// know the command, and checked like any other once it does. Delete an
// entry once its command is on main.
var pendingCommands = map[string]string{}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds the Furrow binaries once per test process, into a
// temporary directory, with the same go build the production-shape tests
// use (so the build cache serves both), and returns their paths by name.
func binaries(t testing.TB) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the Furrow binaries")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "furrow-deploy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		pkgs := make([]string, 0, len(furrowPackages))
		for _, p := range furrowPackages {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	paths := map[string]string{}
	for name := range furrowPackages {
		paths[name] = filepath.Join(buildDir, name)
	}
	return paths
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// commandSpec is what one Furrow command accepts, read from its -h output:
// the usage text lists every flag (Go's flag.PrintDefaults) and names in
// brackets the variable each one reads ([FURROW_GRPC_ADDR]), a variable
// that must have one value with it ([FURROW_INSECURE_DEV=1]); variables
// without a flag (FURROW_NATS_PASSWORD) are named in the text.
type commandSpec struct {
	name     string            // "procurement", "furrow certs"
	flags    map[string]bool   // flag name → takes a value
	defaults map[string]string // flag name → default, as printed
	env      map[string]string // FURROW_* variable → the one value it takes, or ""
}

var (
	flagLine  = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: ([A-Za-z0-9_]+))?(?:\t|$)`)
	defaultRe = regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	envRe     = regexp.MustCompile(`\bFURROW_[A-Z0-9_]*[A-Z0-9](?:=([^\]\s,;)]+))?`)
)

// parseUsage reads a command's -h output.
func parseUsage(name, usage string) *commandSpec {
	spec := &commandSpec{name: name, flags: map[string]bool{}, defaults: map[string]string{}, env: map[string]string{}}
	last := ""
	for line := range strings.SplitSeq(usage, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			last = m[1]
			spec.flags[last] = m[2] != ""
			continue
		}
		if last != "" && strings.HasPrefix(line, "    \t") {
			if m := defaultRe.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				spec.defaults[last] = m[1]
			}
		}
	}
	for _, m := range envRe.FindAllStringSubmatch(usage, -1) {
		key, _, _ := strings.Cut(m[0], "=")
		if m[1] != "" || spec.env[key] == "" {
			spec.env[key] = m[1]
		}
	}
	return spec
}

// errPending marks a command listed in pendingCommands that the built
// binary does not know yet.
type errPending struct{ command, reason string }

func (e errPending) Error() string {
	return fmt.Sprintf("%s is not in this build yet: %s", e.command, e.reason)
}

var (
	specMu    sync.Mutex
	specCache = map[string]*commandSpec{}
)

// specFor runs `binary words... -h` and parses what it prints; it fails
// when the command does not exist (the binary exits non-zero).
func specFor(t testing.TB, binary string, words []string) (*commandSpec, error) {
	t.Helper()
	bins := binaries(t)
	name := strings.Join(append([]string{binary}, words...), " ")
	specMu.Lock()
	defer specMu.Unlock()
	if s, ok := specCache[name]; ok {
		return s, nil
	}
	cmd := exec.Command(bins[binary], append(slices.Clone(words), "-h")...)
	// Not this machine's environment: defaults as the image has them.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if reason, ok := pendingCommands[name]; ok {
			return nil, errPending{command: name, reason: reason}
		}
		last := strings.TrimSpace(out.String())
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		return nil, fmt.Errorf("%q is not a command of the binary (%s -h: %v: %s)", name, name, err, last)
	}
	s := parseUsage(name, out.String())
	if len(s.flags) == 0 {
		return nil, fmt.Errorf("%s -h lists no flags; has its usage format changed?\n%s", name, out.String())
	}
	specCache[name] = s
	return s, nil
}

// invocation is one container's command line and environment, from a
// compose service or a Kubernetes container.
type invocation struct {
	where string            // for messages: "docker-compose.yml: service procurement"
	argv  []string          // entrypoint and command, as the container runs it
	env   map[string]string // variables it sets; a value from a secret is ""
}

// checkFurrowCommand checks inv against the Furrow binary it runs: that
// binary exists in the image, every flag is one the command defines (and
// gets a value if it takes one), no stray argument is left, and every
// FURROW_* variable is one the command reads, with the value it requires
// if it names one. It returns the command's spec and effective settings
// (flag, else variable, else default) for further checks; problems are
// sentences that name the container. A nil spec and no problem means the
// container does not run a Furrow binary (nats-server), or runs a command
// of pendingCommands this build lacks: then pending says so.
func checkFurrowCommand(t testing.TB, inv invocation) (spec *commandSpec, settings map[string]string, problems []string, pending string) {
	t.Helper()
	bad := func(format string, args ...any) {
		problems = append(problems, inv.where+": "+fmt.Sprintf(format, args...))
	}
	if len(inv.argv) == 0 {
		bad("no command: the image's default command only prints furrow --help")
		return nil, nil, problems, ""
	}
	bin := path.Base(inv.argv[0])
	if strings.Contains(inv.argv[0], "/") && path.Dir(inv.argv[0]) != imageBinDir {
		bad("runs %s, but the image has its binaries in %s (deploy/Dockerfile)", inv.argv[0], imageBinDir)
	}
	if bin == "nats-server" {
		return nil, nil, problems, ""
	}
	if _, ok := furrowPackages[bin]; !ok {
		bad("runs %q, which deploy/Dockerfile does not build", bin)
		return nil, nil, problems, ""
	}
	args := inv.argv[1:]
	var words []string
	if bin == "furrow" {
		for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			words, args = append(words, args[0]), args[1:]
		}
	}
	spec, err := specFor(t, bin, words)
	if err != nil {
		if p, ok := err.(errPending); ok {
			return nil, nil, problems, fmt.Sprintf("%s: not checked: %v", inv.where, p)
		}
		bad("%v", err)
		return nil, nil, problems, ""
	}

	settings = map[string]string{}
	given := map[string]bool{}
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		args = args[1:]
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		takesValue, ok := spec.flags[name]
		switch {
		case !ok:
			bad("%s has no flag -%s (its flags: %s)", spec.name, name, strings.Join(sortedKeys(spec.flags), ", "))
			// Most likely a misspelt flag that takes a value: skip the
			// value rather than report it as a stray argument too.
			if !hasValue && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				args = args[1:]
			}
			continue
		case takesValue && !hasValue:
			if len(args) == 0 {
				bad("%s: flag -%s needs a value", spec.name, name)
				continue
			}
			value, args = args[0], args[1:]
		case !takesValue && !hasValue:
			value = "true"
		}
		settings[name], given[name] = value, true
	}
	if len(args) > 0 {
		bad("%s takes no arguments, but is given %q (a misspelled or misplaced flag?)", spec.name, strings.Join(args, " "))
	}

	for _, key := range sortedKeys(inv.env) {
		if !strings.HasPrefix(key, "FURROW_") {
			continue
		}
		want, ok := spec.env[key]
		switch {
		case !ok:
			bad("%s does not read %s (the variables its -h names: %s)", spec.name, key, strings.Join(sortedKeys(spec.env), ", "))
		case want != "" && inv.env[key] != want:
			bad("%s: %s must be %q (its -h says [%s=%s]), not %q", spec.name, key, want, key, want, inv.env[key])
		}
	}
	// Effective settings: a flag given wins over its variable, which wins
	// over the default. A flag's variable is the one in its usage line;
	// the usual naming (--grpc-addr ↔ FURROW_GRPC_ADDR) is enough here.
	for name := range spec.flags {
		if given[name] {
			continue
		}
		if v, ok := inv.env["FURROW_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))]; ok {
			settings[name] = v
		} else if d, ok := spec.defaults[name]; ok {
			settings[name] = d
		}
	}
	return spec, settings, problems, ""
}

// listenPort is the port of a listen address such as ":9090".
func listenPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return port
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestUsageParsing pins the reading of -h output on the real binaries: a
// change to their usage format that this parser misses would otherwise
// make every later check pass vacuously or fail confusingly.
func TestUsageParsing(t *testing.T) {
	t.Parallel()
	spec, err := specFor(t, "farmer-ledger", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, takesValue := range map[string]bool{"nats-url": true, "insecure-dev": false, "payment-provider": true, "start-timeout": true} {
		if got, ok := spec.flags[name]; !ok || got != takesValue {
			t.Errorf("farmer-ledger -h: flag -%s: got (takes value %v, listed %v), want (%v, true)", name, got, ok, takesValue)
		}
	}
	for key, want := range map[string]string{"FURROW_NATS_URL": "", "FURROW_NATS_PASSWORD": "", "FURROW_INSECURE_DEV": "1", "FURROW_PAYMENT_PROVIDER": ""} {
		if got, ok := spec.env[key]; !ok || got != want {
			t.Errorf("farmer-ledger -h: variable %s: got (%q, listed %v), want (%q, true)", key, got, ok, want)
		}
	}
	if got := spec.defaults["ops-addr"]; got != ":9090" {
		t.Errorf("farmer-ledger -h: default of -ops-addr = %q, want \":9090\"", got)
	}
	if _, ok := spec.flags["nats-password"]; ok {
		t.Error("farmer-ledger -h lists -nats-password: passwords must not be flags")
	}

	certs, err := specFor(t, "furrow", []string{"certs"})
	if err != nil {
		t.Fatal(err)
	}
	if !certs.flags["dir"] || !certs.flags["hosts"] {
		t.Errorf("furrow certs -h: flags %v, want dir and hosts taking values", certs.flags)
	}
	if _, err := specFor(t, "furrow", []string{"no-such-command"}); err == nil {
		t.Error("furrow no-such-command -h: want an error, got a spec")
	}
}

// TestCheckFurrowCommand runs the command-line check on small cases with
// the real service binary: each misspelling must be named.
func TestCheckFurrowCommand(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		inv  invocation
		want []string // substrings, one problem each; none: no problem
	}{
		{"good", invocation{argv: []string{"/usr/local/bin/procurement", "--nats-url", "nats://a:4222", "-insecure-dev", "--grpc-addr=:7070"},
			env: map[string]string{"FURROW_NATS_USER": "procurement", "FURROW_NATS_PASSWORD": "x", "OTEL_SERVICE_NAME": "p"}}, nil},
		{"flag", invocation{argv: []string{"procurement", "--nats-ulr", "nats://a:4222"}},
			[]string{"procurement has no flag -nats-ulr"}},
		{"stray argument", invocation{argv: []string{"procurement", "-insecure-dev", "nats://a:4222"}},
			[]string{`procurement takes no arguments, but is given "nats://a:4222"`}},
		{"missing value", invocation{argv: []string{"procurement", "--grpc-addr"}}, []string{"flag -grpc-addr needs a value"}},
		{"variable", invocation{argv: []string{"procurement"}, env: map[string]string{"FURROW_NATS_PASSWROD": "x"}},
			[]string{"procurement does not read FURROW_NATS_PASSWROD"}},
		{"value", invocation{argv: []string{"farmer-ledger"}, env: map[string]string{"FURROW_INSECURE_DEV": "true"}},
			[]string{`FURROW_INSECURE_DEV must be "1"`}},
		{"directory", invocation{argv: []string{"/usr/bin/procurement"}}, []string{"the image has its binaries in /usr/local/bin"}},
		{"binary", invocation{argv: []string{"ledger"}}, []string{`runs "ledger", which deploy/Dockerfile does not build`}},
		{"subcommand", invocation{argv: []string{"furrow", "cert", "--dir", "/certs"}}, []string{`"furrow cert" is not a command of the binary`}},
		{"subcommand flag", invocation{argv: []string{"furrow", "certs", "--dirs", "/certs"}}, []string{"furrow certs has no flag -dirs"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.inv.where = c.name
			_, _, problems, _ := checkFurrowCommand(t, c.inv)
			if len(problems) != len(c.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(problems), len(c.want), strings.Join(problems, "\n"))
			}
			for i, w := range c.want {
				if !strings.Contains(problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], w)
				}
			}
		})
	}
}

// skipPending reports each container left unchecked because it runs a
// command of pendingCommands, as a skipped subtest: visible in every run,
// never a silent pass.
func skipPending(t *testing.T, pending []string) {
	t.Helper()
	for i, p := range pending {
		t.Run(fmt.Sprintf("pending-%d", i+1), func(t *testing.T) { t.Skip(p) })
	}
}
