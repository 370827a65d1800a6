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
// explicit provider, and runs the simulator only in --insecure-dev.
func TestPaymentProviderMustBeChosen(t *testing.T) {
	t.Parallel()
	dev := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-user", "ledger", "--insecure-dev"}
	// Otherwise safe production settings: only the provider is in question.
	production := []string{"--postgres-dsn", "postgres://db/furrow", "--nats-user", "ledger",
		"--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-client-ca", "ca.crt", "--pii-kek-file", "kek"}
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
		{"no provider, insecure-dev", dev, "--payment-provider is required", true},
		{"simulated without insecure-dev", append(production, "--payment-provider", "simulated"), "pays nobody; it needs --insecure-dev", true},
		{"unknown provider", append(dev, "--payment-provider", "bank-of-nowhere"), "unknown provider", false},
		{"no key-encryption key", production[:len(production)-2], "--pii-kek-file is required", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, env, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, serve.ErrUnsafe) != tc.unsafe {
				t.Fatalf("error = %v, want one naming %q (unsafe: %v)", err, tc.want, tc.unsafe)
			}
		})
	}
}
