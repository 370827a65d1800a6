package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/serve"
)

// TestPaymentProviderMustBeChosen: the ledger refuses to start without an
// explicit provider, and runs the simulator only with
// --allow-simulated-provider.
func TestPaymentProviderMustBeChosen(t *testing.T) {
	t.Parallel()
	dev := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-user", "ledger", "--allow-plaintext-grpc", "--allow-simulated-provider"}
	// Otherwise safe production settings: only the provider is in question.
	production := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-user", "ledger",
		"--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-client-ca", "ca.crt"}
	env := func(k string) string {
		if k == "FURROW_NATS_PASSWORD" {
			return "pw"
		}
		return ""
	}
	for _, tc := range []struct {
		name   string
		args   []string
		want   string
		unsafe bool
	}{
		{"no provider", production, "--payment-provider is required", true},
		{"no provider, overrides", dev, "--payment-provider is required", true},
		{"no provider, insecure-dev", append(production, "--insecure-dev"), "--payment-provider is required", true},
		{"simulated without override", append(production, "--payment-provider", "simulated"), "pays nobody; it needs --allow-simulated-provider", true},
		{"simulated with the other overrides", append(production, "--payment-provider", "simulated", "--allow-plaintext-grpc", "--allow-few-replicas", "--allow-no-nats-auth"),
			"pays nobody; it needs --allow-simulated-provider", true},
		{"unknown provider", append(dev, "--payment-provider", "bank-of-nowhere"), "unknown provider", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, env, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, serve.ErrUnsafe) != tc.unsafe {
				t.Fatalf("error = %v, want one naming %q (unsafe: %v)", err, tc.want, tc.unsafe)
			}
		})
	}
}

// TestSimulatedProviderOverride: with --allow-simulated-provider (or the
// deprecated --insecure-dev, which sets it) the ledger starts with the
// simulator and logs the override at WARN with what it weakens.
func TestSimulatedProviderOverride(t *testing.T) {
	t.Parallel()
	base := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-url", "nats://127.0.0.1:1", "--nats-user", "ledger",
		"--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-client-ca", "ca.crt",
		"--ops-addr", "", "--log-format", "text", "--payment-provider", "simulated"}
	env := func(k string) string {
		if k == "FURROW_NATS_PASSWORD" {
			return "pw"
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"override", []string{"--allow-simulated-provider"}, []string{"override=--allow-simulated-provider", "pay nobody"}},
		{"from the environment", nil, []string{"override=--allow-simulated-provider"}},
		{"deprecated alias", []string{"--insecure-dev"}, []string{"--insecure-dev is deprecated", "--allow-simulated-provider", "override=--allow-simulated-provider"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := env
			if tc.args == nil {
				getenv = func(k string) string {
					if k == "FURROW_ALLOW_SIMULATED_PROVIDER" {
						return "1"
					}
					return env(k)
				}
			}
			// The certificate files do not exist: the process logs its
			// overrides, then fails on them, before it connects anywhere.
			var out strings.Builder
			err := run(context.Background(), append(base, tc.args...), getenv, &out)
			if err == nil || !strings.Contains(err.Error(), "gRPC server certificate") {
				t.Fatalf("run: %v, want it to get as far as loading the certificate\n%s", err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("start-up log lacks %q:\n%s", w, out.String())
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
