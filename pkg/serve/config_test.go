package serve

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/eventstore"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// secure is a complete production configuration.
var secure = []string{
	"--postgres-dsn", "postgres://furrow@db/furrow",
	"--nats-url", "nats://n1:4222,nats://n2:4222",
	"--nats-user", "procurement",
	"--tls-cert", "server.crt", "--tls-key", "server.key", "--tls-client-ca", "clients.crt",
}

var secureEnv = map[string]string{"FURROW_NATS_PASSWORD": "pw"}

func TestParseConfigProduction(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("procurement", secure, env(secureEnv), io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Service:  "procurement",
		NATSURLs: []string{"nats://n1:4222", "nats://n2:4222"}, NATSUser: "procurement", NATSPassword: "pw",
		StreamReplicas: 3, PostgresDSN: "postgres://furrow@db/furrow", GRPCAddr: ":7070",
		TLSCert: "server.crt", TLSKey: "server.key", TLSClientCA: "clients.crt", OpsAddr: ":9090",
		GRPCRate: 100, GRPCBurst: 200,
		LogJSON: true, StartTimeout: 2 * time.Minute, ShutdownTimeout: 25 * time.Second,
	}
	want.Telemetry.ServiceName = "procurement"
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if len(cfg.relaxed()) != 0 {
		t.Errorf("relaxed = %v, want nothing in production", cfg.relaxed())
	}
}

func TestParseConfigFromEnvironment(t *testing.T) {
	t.Parallel()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("farmer-ledger", nil, env(map[string]string{
		"FURROW_POSTGRES_DSN": "postgres://db/furrow", "FURROW_NATS_URL": "tls://n1:4222",
		"FURROW_NATS_USER": "ledger", "FURROW_NATS_PASSWORD_FILE": pwFile, "FURROW_NATS_CA": "ca.crt",
		"FURROW_STREAM_REPLICAS": "5", "FURROW_GRPC_ADDR": "0.0.0.0:7171",
		"FURROW_TLS_CERT": "s.crt", "FURROW_TLS_KEY": "s.key", "FURROW_TLS_CLIENT_CA": "c.crt",
		"FURROW_OPS_ADDR": "", "FURROW_LOG_FORMAT": "text",
	}), io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATSPassword != "from-file" || cfg.StreamReplicas != 5 || cfg.GRPCAddr != "0.0.0.0:7171" ||
		cfg.NATSCA != "ca.crt" || cfg.OpsAddr != ":9090" || cfg.LogJSON {
		// An empty FURROW_OPS_ADDR keeps the default; --ops-addr "" turns it off.
		t.Errorf("config from environment = %+v", cfg)
	}
}

// TestUnsafeSettingsRefuseToStart checks each refusal alone: it names its
// own override; another override does not allow it; its own does, and is
// then the one override in effect; the deprecated --insecure-dev allows
// every one of them.
func TestUnsafeSettingsRefuseToStart(t *testing.T) {
	t.Parallel()
	without := func(flags ...string) []string {
		var out []string
		for i := 0; i < len(secure); i += 2 {
			drop := false
			for _, f := range flags {
				drop = drop || secure[i] == f
			}
			if !drop {
				out = append(out, secure[i], secure[i+1])
			}
		}
		return out
	}
	overrides := []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--allow-few-replicas"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		// want is a piece of the refusal; override allows it ("": none does).
		want     string
		override string
	}{
		{"no TLS", without("--tls-cert", "--tls-key", "--tls-client-ca"), secureEnv, "gRPC without TLS", "--allow-plaintext-grpc"},
		{"no NATS credentials", without("--nats-user"), nil, "NATS without credentials", "--allow-no-nats-auth"},
		{"two replicas", append(secure, "--stream-replicas", "2"), secureEnv, "--stream-replicas 2: production streams need 3", "--allow-few-replicas"},
		{"one replica", append(secure, "--stream-replicas", "1"), secureEnv, "--stream-replicas 1", "--allow-few-replicas"},
		{"no PostgreSQL", without("--postgres-dsn"), secureEnv, "no PostgreSQL DSN", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("procurement", tc.args, env(tc.env), io.Discard, nil)
			if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.want) || (tc.override != "" && !strings.Contains(err.Error(), "or pass "+tc.override)) {
				t.Fatalf("error = %v, want %v naming %q and the override %s", err, ErrUnsafe, tc.want, tc.override)
			}
			if !strings.HasPrefix(err.Error(), "refusing to start: unsafe settings") {
				t.Errorf("error = %q, want it to start with \"refusing to start: unsafe settings\"", err)
			}
			for _, o := range overrides {
				if o == tc.override {
					continue
				}
				if _, err := ParseConfig("procurement", append(tc.args, o), env(tc.env), io.Discard, nil); !errors.Is(err, ErrUnsafe) {
					t.Errorf("with %s, another setting's override: error = %v, want %v", o, err, ErrUnsafe)
				}
			}
			if tc.override != "" {
				cfg, err := ParseConfig("procurement", append(tc.args, tc.override), env(tc.env), io.Discard, nil)
				if err != nil {
					t.Fatalf("with %s: %v", tc.override, err)
				}
				if r := cfg.relaxed(); len(r) != 1 || r[0].Override != tc.override || r[0].Weakens == "" {
					t.Errorf("with %s: relaxed = %q, want that override alone, saying what it weakens", tc.override, r)
				}
			}
			cfg, err := ParseConfig("procurement", append(tc.args, "--insecure-dev"), env(tc.env), io.Discard, nil)
			switch {
			case tc.override != "" && err != nil:
				t.Errorf("with the deprecated --insecure-dev: %v", err)
			case tc.override != "" && (len(cfg.relaxed()) != 1 || cfg.relaxed()[0].Override != tc.override):
				t.Errorf("with --insecure-dev: relaxed = %q, want %s alone (overrides of safe settings weaken nothing)", cfg.relaxed(), tc.override)
			case tc.override == "" && !errors.Is(err, ErrUnsafe):
				t.Errorf("with --insecure-dev: error = %v, want %v", err, ErrUnsafe)
			}
		})
	}
}

// TestOverridesAreLoggedAtStart: Run logs each override in effect at WARN
// with what it weakens, and the deprecated --insecure-dev says it is
// deprecated and what it sets.
func TestOverridesAreLoggedAtStart(t *testing.T) {
	t.Parallel()
	base := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-url", "nats://127.0.0.1:1", "--ops-addr", "", "--log-format", "text"}
	svc := Service{Name: "procurement", Short: "procurement", Stream: func(int) eventstore.StreamSpec { return eventstore.StreamSpec{Name: "PROCUREMENT"} },
		New: func(Deps) (Wired, error) { return nil, errors.New("not reached") }}
	for _, tc := range []struct {
		name     string
		args     []string
		want     []string
		unwanted []string
	}{
		{"named overrides", []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--allow-few-replicas", "--stream-replicas", "1"},
			[]string{"override=--allow-plaintext-grpc", "override=--allow-no-nats-auth", "override=--allow-few-replicas", "every caller has every role"},
			[]string{"deprecated"}},
		{"one override", []string{"--allow-plaintext-grpc", "--allow-no-nats-auth"},
			[]string{"override=--allow-plaintext-grpc", "override=--allow-no-nats-auth"}, []string{"--allow-few-replicas", "deprecated"}},
		{"deprecated alias", []string{"--insecure-dev"},
			[]string{"level=WARN msg=\"--insecure-dev is deprecated", "override=--allow-plaintext-grpc", "override=--allow-no-nats-auth"},
			[]string{"override=--allow-few-replicas"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("procurement", append(base, tc.args...), env(nil), io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // log the start, then stop while waiting for NATS
			var out strings.Builder
			if err := Run(ctx, cfg, svc, &out); err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("start-up log lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.unwanted {
				if strings.Contains(out.String(), w) {
					t.Errorf("start-up log mentions %q:\n%s", w, out.String())
				}
			}
			for line := range strings.SplitSeq(out.String(), "\n") {
				if strings.Contains(line, "override=") && !strings.Contains(line, "level=WARN") {
					t.Errorf("override logged below WARN: %s", line)
				}
			}
		})
	}
}

func TestAllUnsafeSettingsAreListedTogether(t *testing.T) {
	t.Parallel()
	_, err := ParseConfig("procurement", []string{"--stream-replicas", "1"}, env(nil), io.Discard, nil)
	for _, want := range []string{"no PostgreSQL DSN", "gRPC without TLS", "NATS without credentials", "--stream-replicas 1"} {
		if !strings.Contains(fmtErr(err), want) {
			t.Errorf("error = %v\nwant it to list %q", err, want)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestBadSettingsFailInEveryMode: settings that cannot work are errors,
// --insecure-dev or not, and are not reported as merely unsafe.
func TestBadSettingsFailInEveryMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"half TLS", append(secure[:len(secure)-2:len(secure)-2], "--insecure-dev"), secureEnv, "mTLS needs all of"},
		{"user without password", append(secure, "--insecure-dev"), nil, "--nats-user without a password"},
		{"password without user", []string{"--postgres-dsn", "x", "--insecure-dev"}, map[string]string{"FURROW_NATS_PASSWORD": "pw"}, "without --nats-user"},
		{"password in URL", append(secure, "--nats-url", "nats://u:p@n1:4222"), secureEnv, "carries credentials"},
		{"not a NATS URL", append(secure, "--nats-url", "http://n1:4222"), secureEnv, "want nats://host:port"},
		{"six replicas", append(secure, "--stream-replicas", "6"), secureEnv, "JetStream allows 1 to 5"},
		{"replicas not a number", append(secure, "--stream-replicas", "three"), secureEnv, "want a number"},
		{"bad gRPC address", append(secure, "--grpc-addr", "7070"), secureEnv, "--grpc-addr"},
		{"bad log format", append(secure, "--log-format", "xml"), secureEnv, "--log-format"},
		{"positional argument", append(secure, "extra"), secureEnv, "takes no arguments"},
		{"NATS cert without key", append(secure, "--nats-cert", "c.crt"), secureEnv, "--nats-cert and --nats-key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("procurement", tc.args, env(tc.env), io.Discard, nil)
			if err == nil || errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want a configuration error naming %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigHelpAndExtraFlags(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	var provider string
	extra := func(fs *flag.FlagSet) { fs.StringVar(&provider, "payment-provider", "", "who pays") }
	if _, err := ParseConfig("farmer-ledger", []string{"-h"}, env(nil), &out, extra); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: error = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"--allow-plaintext-grpc", "--allow-no-nats-auth", "--allow-few-replicas", "--insecure-dev", "FURROW_POSTGRES_DSN", "-payment-provider", "-tls-client-ca"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage does not mention %s:\n%s", want, out.String())
		}
	}
	if _, err := ParseConfig("farmer-ledger", append(secure, "--payment-provider", "bank"), env(secureEnv), io.Discard, extra); err != nil || provider != "bank" {
		t.Errorf("extra flag: provider = %q, err = %v", provider, err)
	}
}
