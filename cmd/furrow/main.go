// Command furrow runs Furrow's development stack and, later, its operator
// tools.
//
//	furrow dev      run everything in one process (what `make run` runs)
//	furrow version  print the version
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

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `furrow — the event-sourced backbone for agricultural direct purchasing

Usage:
  furrow <command> [flags]

Commands:
  dev        run Furrow in one process: embedded JetStream, the three
             services, SQLite read models, one gRPC address
  version    print the version

Run 'furrow <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "furrow:", err)
		os.Exit(1)
	}
}

// run dispatches a command. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "dev":
		cfg, err := parseDevConfig(args[1:], stderr, getenv)
		if err != nil {
			return err
		}
		return runDev(ctx, cfg, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "furrow", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
