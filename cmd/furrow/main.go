// Command furrow runs Furrow's development stack and, later, its operator
// tools.
//
//	furrow dev      run everything in one process (what `make run` runs)
//	furrow version  print the version, VCS revision and Go version (also --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..."; left
// at "dev", `furrow version` reports the module's version instead.
var version = "dev"

const usage = `furrow — the event-sourced backbone for agricultural direct purchasing

Usage:
  furrow <command> [flags]

Commands:
  dev        run Furrow in one process: embedded JetStream, the three
             services, SQLite read models, one gRPC address
  ledger     finance views: trial-balance, statement (over gRPC)
  reconcile  match payouts against a provider settlement file; resolve breaks
  trace      lot ID | farmer ID: a lot from weigh-in to payout; a farmer in kg
  certs      write a development CA and certificates for mTLS (roles)
  admin      streams apply: create or update the streams and durable
             consumers as the NATS admin user (before services start);
             backup, restore: snapshot every stream, restore into an
             empty server
  console    the web console and HTTP/JSON API of a production deployment
             (a gateway in front of the services; OIDC sign-in required)

Operators (over gRPC, --addr or FURROW_ADDR, default 127.0.0.1:7070;
--tls-ca/--tls-cert/--tls-key for a production deployment's mTLS):
  streams      ls | info            the event streams
  events       list | get | tail    events, decoded (--aggregate ID)
  projections  ls | status | watch | rebuild | diff | swap | drop | pause | resume
  dlq          ls | show | redrive  dead letters
  context      add | use | ls | show | rm   named deployments (address,
               client certificate); --context NAME on any command
  completion bash | zsh: shell completion of commands, flags and contexts
  version    print the version, VCS revision and Go version (also --version)

Run 'furrow <command> -h' for a command's flags.

` + exitCodesHelp

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "furrow:", err)
		os.Exit(exitCode(err))
	}
}

// run dispatches a command. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	args, getenv, err := withContext(args, getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "context":
		return runContext(ctx, args[1:], stdout, stderr, getenv)
	case "completion":
		return runCompletion(args[1:], stdout, stderr)
	case "dev":
		cfg, err := parseDevConfig(args[1:], stderr, getenv)
		if err != nil {
			return err
		}
		return runDev(ctx, cfg, stdout, stderr)
	case "ledger":
		return runLedger(ctx, args[1:], stdout, stderr, getenv)
	case "reconcile":
		return runReconcile(ctx, args[1:], stdout, stderr, getenv)
	case "trace":
		return runTrace(ctx, args[1:], stdout, stderr, getenv)
	case "streams":
		return runStreams(ctx, args[1:], stdout, stderr, getenv)
	case "events":
		return runEvents(ctx, args[1:], stdout, stderr, getenv)
	case "projections":
		return runProjections(ctx, args[1:], stdout, stderr, getenv)
	case "dlq":
		return runDLQ(ctx, args[1:], stdout, stderr, getenv)
	case "admin":
		return runAdmin(ctx, args[1:], stdout, stderr, getenv)
	case "certs":
		return runCerts(ctx, args[1:], stdout, stderr)
	case "console":
		cfg, err := parseConsoleConfig(args[1:], stderr, getenv)
		if err != nil {
			return err
		}
		return runConsole(ctx, cfg, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionText(buildInfo()))
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", args[0])
	}
}
