package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
)

// composeFile is the file TestCompose checks.
var composeFile = filepath.Join(repoRoot, "docker-compose.yml")

// composeWarnings collects what the compose-spec loader logs (through
// logrus) while it loads a file: an unset variable without a default is
// only a warning there, and an empty password or URL here.
type composeWarnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *composeWarnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *composeWarnings) Fire(e *logrus.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, e.Message)
	return nil
}

var (
	// composeMu serialises loads: the loader logs to logrus's global
	// logger, whose hook collects one load's warnings at a time.
	composeMu       sync.Mutex
	composeHookOnce sync.Once
	composeLog      = &composeWarnings{}
)

// loadCompose loads file with the compose-spec loader as `docker compose`
// would from the repository root, with no variable set (so every
// ${VAR:-default} takes its default, whatever this machine's environment),
// and returns the project and every error or warning as a problem.
func loadCompose(file string) (*types.Project, []string) {
	return loadComposeEnv(file, nil)
}

// loadComposeEnv is loadCompose with env ("NAME=value") as the variables
// set, as a .env file or the shell would set them.
func loadComposeEnv(file string, env []string) (*types.Project, []string) {
	composeHookOnce.Do(func() {
		logrus.AddHook(composeLog)
		logrus.SetOutput(io.Discard)
	})
	composeMu.Lock()
	defer composeMu.Unlock()
	composeLog.mu.Lock()
	composeLog.msgs = nil
	composeLog.mu.Unlock()

	where := filepath.Base(file)
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithName("furrow"),
		// The repository root, wherever the file is: relative paths
		// (./deploy/nats) mean the repository's files, also for a copy.
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(env),
	)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", where, err)}
	}
	project, err := opts.LoadProject(context.Background())
	var problems []string
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s: the compose-spec loader refuses it: %v", where, err))
	}
	composeLog.mu.Lock()
	for _, m := range composeLog.msgs {
		problems = append(problems, fmt.Sprintf("%s: the compose-spec loader warns: %s", where, m))
	}
	composeLog.mu.Unlock()
	return project, problems
}

// composeReport is what checkCompose found: problems, and the services
// whose command and configuration it checked (so a test can tell a clean
// file from a check that looked at nothing).
type composeReport struct {
	problems []string
	checked  []string
	pending  []string // containers running a command this build lacks
}

// checkCompose loads a compose file and checks it against this
// repository: what the loader says, the build context and Dockerfile,
// every bind mount from the repository, and for each container of
// Furrow's image its command (flags and variables of the Furrow binary it
// runs; nats-server: the variables its configuration uses) and every
// absolute path in its arguments and variables that falls in a bind mount.
func checkCompose(t testing.TB, file string) composeReport {
	t.Helper()
	project, problems := loadCompose(file)
	rep := composeReport{problems: problems}
	if project == nil {
		return rep
	}
	bad := func(where, format string, args ...any) {
		rep.problems = append(rep.problems, where+": "+fmt.Sprintf(format, args...))
	}
	for _, name := range sortedKeys(project.Services) {
		svc := project.Services[name]
		where := fmt.Sprintf("%s: service %s", filepath.Base(file), name)
		furrowImage := strings.HasPrefix(svc.Image, "furrow:")
		if b := svc.Build; b != nil {
			if msg := inRepo(b.Context, true); msg != "" {
				bad(where, "build context %s", msg)
			}
			df := b.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(b.Context, df)
			}
			if msg := inRepo(df, false); msg != "" {
				bad(where, "Dockerfile %s", msg)
			}
			furrowImage = furrowImage || df == filepath.Join(repoRoot, "deploy", "Dockerfile")
		}
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if msg := inRepo(v.Source, true); msg != "" {
				bad(where, "bind mount %s:%s: %s", v.Source, v.Target, msg)
			}
		}
		if !furrowImage {
			continue
		}
		rep.checked = append(rep.checked, name)

		argv := append(slices.Clone([]string(svc.Entrypoint)), svc.Command...)
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = ""
			if v != nil {
				env[k] = *v
			}
		}
		_, _, ps, pending := checkFurrowCommand(t, invocation{where: where, argv: argv, env: env})
		rep.problems = append(rep.problems, ps...)
		if pending != "" {
			rep.pending = append(rep.pending, pending)
		}

		// Paths the container is told about that come from the repository.
		var paths []string
		for _, a := range argv[min(1, len(argv)):] {
			_, v, _ := strings.Cut(a, "=")
			if strings.HasPrefix(a, "/") {
				v = a
			}
			paths = append(paths, v)
		}
		for _, k := range sortedKeys(env) {
			paths = append(paths, env[k])
		}
		for _, p := range paths {
			if host, ok := boundPath(svc.Volumes, p); ok {
				if msg := inRepo(host, false); msg != "" {
					bad(where, "%s comes from the bind mount %s: %s", p, host, msg)
				}
			}
		}

		if len(argv) > 0 && path.Base(argv[0]) == "nats-server" {
			rep.problems = append(rep.problems, checkNATSVariables(where, argv, svc.Volumes, env)...)
			rep.problems = append(rep.problems, checkLoopbackPorts(where, svc.Ports)...)
		}
	}
	rep.problems = append(rep.problems, checkCAKeyConfined(filepath.Base(file), project)...)
	rep.problems = append(rep.problems, checkPostgresRoles(filepath.Base(file), project)...)
	return rep
}

// checkCAKeyConfined wants the directory `furrow certs --dir` writes to
// (the CA's private key and the client keys) mounted by the container
// that runs it and by no other: a service container that could read
// ca.key could issue itself any role, and one that could read
// operator.key could act as an operator.
func checkCAKeyConfined(file string, project *types.Project) []string {
	var problems []string
	found := false
	for _, name := range sortedKeys(project.Services) {
		svc := project.Services[name]
		argv := append(slices.Clone([]string(svc.Entrypoint)), svc.Command...)
		if len(argv) < 2 || path.Base(argv[0]) != "furrow" || argv[1] != "certs" {
			continue
		}
		found = true
		dir := "certs" // the flag's default, relative to the working directory
		for i, a := range argv {
			switch {
			case (a == "--dir" || a == "-dir") && i+1 < len(argv):
				dir = argv[i+1]
			case strings.HasPrefix(a, "--dir=") || strings.HasPrefix(a, "-dir="):
				_, dir, _ = strings.Cut(a, "=")
			}
		}
		where := fmt.Sprintf("%s: service %s", file, name)
		vol, ok := mountOf(svc.Volumes, dir)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: furrow certs --dir %s is not on a volume: the CA it writes is lost with the container", where, dir))
			continue
		}
		for _, other := range sortedKeys(project.Services) {
			if other == name {
				continue
			}
			for _, v := range project.Services[other].Volumes {
				if v.Type == vol.Type && v.Source == vol.Source {
					problems = append(problems, fmt.Sprintf("%s: service %s mounts %s (at %s), where furrow certs (service %s) writes ca.key and the client keys: only the certs step may",
						file, other, v.Source, v.Target, name))
				}
			}
		}
	}
	if !found {
		problems = append(problems, file+": no service runs furrow certs, so nothing shows where the CA key is kept")
	}
	return problems
}

// checkPostgresRoles wants every service that has a PostgreSQL DSN to
// connect as a role of its own, never as the server's superuser
// (POSTGRES_USER) nor as another service's role, with the password the
// postgres container gives that role (POSTGRES_<ROLE>_PASSWORD, which the
// init script deploy/postgres/roles.sql reads), and the init script
// mounted where the postgres image runs it.
func checkPostgresRoles(file string, project *types.Project) []string {
	var problems []string
	var pg *types.ServiceConfig
	for _, name := range sortedKeys(project.Services) {
		if svc := project.Services[name]; strings.HasPrefix(svc.Image, "postgres:") {
			pg = &svc
		}
	}
	if pg == nil {
		return nil
	}
	pgEnv := func(k string) string {
		if v := pg.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	initScript := false
	for _, v := range pg.Volumes {
		if v.Type == types.VolumeTypeBind && strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") && filepath.Base(v.Source) == "roles.sql" {
			initScript = true
		}
	}
	if !initScript {
		problems = append(problems, fmt.Sprintf("%s: service %s does not run deploy/postgres/roles.sql (mounted in /docker-entrypoint-initdb.d): the services' roles would not exist", file, pg.Name))
	}
	owner := map[string]string{}
	for _, name := range sortedKeys(project.Services) {
		v := project.Services[name].Environment["FURROW_POSTGRES_DSN"]
		if v == nil {
			continue
		}
		where := fmt.Sprintf("%s: service %s", file, name)
		u, err := url.Parse(*v)
		if err != nil || u.User == nil {
			problems = append(problems, fmt.Sprintf("%s: FURROW_POSTGRES_DSN names no user", where))
			continue
		}
		user := u.User.Username()
		pw, _ := u.User.Password()
		switch {
		case user == pgEnv("POSTGRES_USER"):
			problems = append(problems, fmt.Sprintf("%s: connects to PostgreSQL as %s, the superuser: give it a role of its own that can read only its own schema", where, user))
		case owner[user] != "":
			problems = append(problems, fmt.Sprintf("%s: connects to PostgreSQL as %s, the role of service %s: each service needs its own", where, user, owner[user]))
		default:
			owner[user] = name
			if want := pgEnv("POSTGRES_" + strings.ToUpper(user) + "_PASSWORD"); want == "" || want != pw {
				problems = append(problems, fmt.Sprintf("%s: the password of PostgreSQL role %s is not the one service %s gives it (POSTGRES_%s_PASSWORD)", where, user, pg.Name, strings.ToUpper(user)))
			}
		}
	}
	return problems
}

// mountOf is the volume a path inside a container falls in (the most
// specific mount).
func mountOf(volumes []types.ServiceVolumeConfig, p string) (types.ServiceVolumeConfig, bool) {
	var best types.ServiceVolumeConfig
	found := false
	for _, v := range volumes {
		t := strings.TrimSuffix(v.Target, "/")
		if (p == t || strings.HasPrefix(p, t+"/")) && (!found || len(t) > len(strings.TrimSuffix(best.Target, "/"))) {
			best, found = v, true
		}
	}
	return best, found
}

// checkLoopbackPorts wants every port a NATS node publishes on the host
// bound to the loopback interface: its client port takes passwords in
// clear (no TLS in the compose file) and its monitoring endpoint answers
// anyone (nats-server has no authentication for it).
func checkLoopbackPorts(where string, ports []types.ServicePortConfig) []string {
	var problems []string
	for _, p := range ports {
		if p.Published == "" {
			continue
		}
		if ip := net.ParseIP(p.HostIP); ip == nil || !ip.IsLoopback() {
			host := p.HostIP
			if host == "" {
				host = "every interface"
			}
			problems = append(problems, fmt.Sprintf("%s: publishes NATS port %d on %s of the host (as %s): publish it on 127.0.0.1 only",
				where, p.Target, host, p.Published))
		}
	}
	return problems
}

// inRepo says what is wrong with a path a compose file takes from the
// repository: outside it, or missing ("" when neither).
func inRepo(p string, dirOK bool) string {
	rel, err := filepath.Rel(repoRoot, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Sprintf("%s is outside the repository", p)
	}
	st, err := os.Stat(p)
	switch {
	case err != nil:
		return fmt.Sprintf("%s does not exist in the repository", rel)
	case st.IsDir() && !dirOK:
		return fmt.Sprintf("%s is a directory, not a file", rel)
	}
	return ""
}

// boundPath maps a path inside the container to the host path of the bind
// mount it falls in (the most specific one), if any.
func boundPath(volumes []types.ServiceVolumeConfig, p string) (string, bool) {
	best, host := "", ""
	for _, v := range volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		t := strings.TrimSuffix(v.Target, "/")
		if (p == t || strings.HasPrefix(p, t+"/")) && len(t) > len(best) {
			best, host = t, filepath.Join(v.Source, filepath.FromSlash(strings.TrimPrefix(p, t)))
		}
	}
	return host, best != ""
}

// checkNATSVariables checks a nats-server container: every variable its
// configuration (with its includes) uses is set, and every NATS_* variable
// it sets is used (a misspelt one would leave a password or route empty).
func checkNATSVariables(where string, argv []string, volumes []types.ServiceVolumeConfig, env map[string]string) []string {
	var problems []string
	conf := ""
	for i, a := range argv {
		switch {
		case (a == "-c" || a == "--config" || a == "-config") && i+1 < len(argv):
			conf = argv[i+1]
		case strings.HasPrefix(a, "-c=") || strings.HasPrefix(a, "--config="):
			_, conf, _ = strings.Cut(a, "=")
		}
	}
	if conf == "" {
		return []string{where + ": nats-server without -c: it would run without Furrow's configuration"}
	}
	host, ok := boundPath(volumes, conf)
	if !ok {
		return []string{fmt.Sprintf("%s: nats-server -c %s: not in a bind mount from the repository", where, conf)}
	}
	used, err := natsConfigVariables(host)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", where, err)}
	}
	for _, v := range sortedKeys(used) {
		if _, ok := env[v]; !ok {
			problems = append(problems, fmt.Sprintf("%s: %s uses $%s, which the service does not set", where, used[v], v))
		}
	}
	for _, k := range sortedKeys(env) {
		if strings.HasPrefix(k, "NATS_") && used[k] == "" {
			problems = append(problems, fmt.Sprintf("%s: sets %s, which no file of its NATS configuration (%s and its includes) uses", where, k, conf))
		}
	}
	return problems
}

var (
	natsVariable = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)
	natsInclude  = regexp.MustCompile(`^\s*include\s+["']?([^"';\s]+)`)
)

// natsConfigVariables returns the variables ($NAME outside quoted strings
// and comments) a nats-server configuration file and its includes use,
// each with the file that uses it first.
func natsConfigVariables(file string) (map[string]string, error) {
	used := map[string]string{}
	var walk func(string, int) error
	walk = func(f string, depth int) error {
		if depth > 10 {
			return fmt.Errorf("%s: includes nested too deep", f)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			line = stripNATSLine(line)
			if m := natsInclude.FindStringSubmatch(line); m != nil {
				if err := walk(filepath.Join(filepath.Dir(f), m[1]), depth+1); err != nil {
					return err
				}
				continue
			}
			for _, m := range natsVariable.FindAllStringSubmatch(line, -1) {
				if used[m[1]] == "" {
					used[m[1]] = filepath.Base(f)
				}
			}
		}
		return nil
	}
	return used, walk(file, 0)
}

// stripNATSLine removes comments and quoted strings from a line of NATS
// configuration ("$JS.API.>" in a permission is a subject, not a variable).
func stripNATSLine(line string) string {
	var out strings.Builder
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
			out.WriteByte(' ')
		case c == '#' || (c == '/' && i+1 < len(line) && line[i+1] == '/'):
			return out.String()
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// TestCompose checks docker-compose.yml: it loads without an error or a
// warning, and every flag, FURROW_* variable, NATS variable and mounted
// file it gives a container exists (see checkCompose).
func TestCompose(t *testing.T) {
	t.Parallel()
	rep := checkCompose(t, composeFile)
	for _, p := range rep.problems {
		t.Error(p)
	}
	skipPending(t, rep.pending)
	// At least these: a check that looked at nothing would pass too.
	for _, want := range []string{"brand-incubation", "certs", "farmer-ledger", "nats-1", "nats-2", "nats-3", "procurement"} {
		if !slices.Contains(rep.checked, want) {
			t.Errorf("did not check the command of service %s (checked %v)", want, rep.checked)
		}
	}
}

// TestComposeBcryptPasswords: deploy/README.md says to give the NATS
// servers bcrypt hashes and the services the clear passwords. With
// NATS_<USER>_PASSWORD (clear) and NATS_<USER>_PASSWORD_HASH set, every
// node gets the hash and the user's container the clear password; without
// a hash both get the clear one (the development default).
func TestComposeBcryptPasswords(t *testing.T) {
	t.Parallel()
	users := []struct{ user, service string }{
		{"PROCUREMENT", "procurement"}, {"BRAND", "brand-incubation"}, {"LEDGER", "farmer-ledger"},
		{"OPERATOR", ""}, {"ADMIN", "streams-apply"}, {"SYS", ""},
	}
	var env []string
	for _, u := range users {
		env = append(env, "NATS_"+u.user+"_PASSWORD=clear-"+u.user,
			// A bcrypt hash, as `nats server passwd` prints it: '$' and all.
			"NATS_"+u.user+"_PASSWORD_HASH=$2a$11$hash"+u.user)
	}
	project, problems := loadComposeEnv(composeFile, env)
	for _, p := range problems {
		t.Error(p)
	}
	if project == nil {
		t.FailNow()
	}
	get := func(service, k string) string {
		if v := project.Services[service].Environment[k]; v != nil {
			return *v
		}
		return "<unset>"
	}
	// Without any variable: the development default on both sides.
	dev, _ := loadCompose(composeFile)
	if dev == nil {
		t.FailNow()
	}
	if node, svc := dev.Services["nats-2"].Environment["NATS_LEDGER_PASSWORD"], dev.Services["farmer-ledger"].Environment["FURROW_NATS_PASSWORD"]; node == nil || svc == nil || *node != "dev-ledger" || *svc != "dev-ledger" {
		t.Errorf("without variables nats-2 and farmer-ledger do not both get the ledger's default password dev-ledger")
	}
	for _, u := range users {
		for _, node := range []string{"nats-1", "nats-2", "nats-3"} {
			if got, want := get(node, "NATS_"+u.user+"_PASSWORD"), "$2a$11$hash"+u.user; got != want {
				t.Errorf("%s gets NATS_%s_PASSWORD=%q, want the hash %q", node, u.user, got, want)
			}
		}
		if u.service != "" {
			if got, want := get(u.service, "FURROW_NATS_PASSWORD"), "clear-"+u.user; got != want {
				t.Errorf("%s gets FURROW_NATS_PASSWORD=%q, want the clear password %q", u.service, got, want)
			}
		}
	}
}

// TestComposeCheckFailsOnBrokenCopies is the proof that TestCompose can
// fail: each case breaks a copy of docker-compose.yml in one place and
// the check must name what is wrong.
func TestComposeCheckFailsOnBrokenCopies(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new string
		want           string
	}{
		{"misspelt flag", `"--dir", "/certs"`, `"--dri", "/certs"`,
			"docker-compose.yml: service certs: furrow certs has no flag -dri"},
		{"misspelt variable", `FURROW_OPS_ADDR: ":9090"`, `FURROW_OPS_ADR: ":9090"`,
			"service procurement: procurement does not read FURROW_OPS_ADR"},
		{"wrong value", `FURROW_ALLOW_SIMULATED_PROVIDER: "1"`, `FURROW_ALLOW_SIMULATED_PROVIDER: "true"`,
			`service farmer-ledger: farmer-ledger: FURROW_ALLOW_SIMULATED_PROVIDER must be "1"`},
		{"binary", `command: ["/usr/local/bin/brand-incubation"]`, `command: ["/usr/local/bin/brand"]`,
			`service brand-incubation: runs "brand", which deploy/Dockerfile does not build`},
		{"missing directory", `["./deploy/nats:/etc/nats:ro", "nats-2:/data"]`, `["./deploy/natz:/etc/nats:ro", "nats-2:/data"]`,
			"service nats-2: bind mount " + filepath.Join(repoRoot, "deploy", "natz") + ":/etc/nats: deploy/natz does not exist"},
		{"missing file", `"/etc/nats/nats-3.conf"`, `"/etc/nats/nats-4.conf"`,
			"service nats-3: /etc/nats/nats-4.conf comes from the bind mount"},
		{"misspelt NATS variable", `NATS_ROUTE_3: nats-route`, `NATS_ROUT_3: nats-route`,
			"service nats-1: nats-1.conf uses $NATS_ROUTE_3, which the service does not set"},
		{"unknown key", "    environment:\n      POSTGRES_USER", "    enviroment:\n      POSTGRES_USER",
			"the compose-spec loader refuses it"},
		{"CA key in a service", "    - service-certs:/certs:ro\n", "    - certs:/certs:ro\n",
			"service procurement mounts certs (at /certs), where furrow certs (service certs) writes ca.key and the client keys"},
		{"NATS client port on every interface", `"127.0.0.1:4222:4222"`, `"4222:4222"`,
			"service nats-1: publishes NATS port 4222 on every interface of the host"},
		{"NATS monitoring on a public address", `"127.0.0.1:8222:8222"`, `"0.0.0.0:8222:8222"`,
			"service nats-1: publishes NATS port 8222 on 0.0.0.0 of the host"},
		{"superuser DSN", "postgres://ledger:${POSTGRES_LEDGER_PASSWORD:-dev-pg-ledger}@", "postgres://furrow:${POSTGRES_PASSWORD:-dev-postgres}@",
			"service farmer-ledger: connects to PostgreSQL as furrow, the superuser"},
		{"shared role", "postgres://brand:${POSTGRES_BRAND_PASSWORD:-dev-pg-brand}@", "postgres://ledger:${POSTGRES_LEDGER_PASSWORD:-dev-pg-ledger}@",
			"connects to PostgreSQL as ledger, the role of service brand-incubation"},
		{"role password mismatch", "POSTGRES_PROCUREMENT_PASSWORD: ${POSTGRES_PROCUREMENT_PASSWORD:-dev-pg-procurement}", "POSTGRES_PROCUREMENT_PASSWORD: x",
			"the password of PostgreSQL role procurement is not the one service postgres gives it"},
		{"unset variable", "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-dev-postgres}", "POSTGRES_PASSWORD: ${POSTGRES_PASSWD}",
			`the compose-spec loader warns: The "POSTGRES_PASSWD" variable is not set`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(orig), c.old) {
				t.Fatalf("docker-compose.yml no longer contains %q: update this case", c.old)
			}
			broken := filepath.Join(t.TempDir(), "docker-compose.yml")
			if err := os.WriteFile(broken, []byte(strings.Replace(string(orig), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			rep := checkCompose(t, broken)
			for _, p := range rep.problems {
				if strings.Contains(p, c.want) {
					t.Logf("fails as it should: %s", p)
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%s", c.want, strings.Join(rep.problems, "\n"))
		})
	}
}
