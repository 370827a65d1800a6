// Command procurement runs the procurement service in production shape:
// one of several stateless replicas against a JetStream cluster and
// PostgreSQL, serving gRPC with mutual TLS. `procurement -h` lists the
// flags; deploy/README.md says how to run it.
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

	"github.com/furrow/furrow/pkg/serve"

	procurement "github.com/furrow/furrow/services/procurement/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "procurement:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := serve.ParseConfig(procurement.Name, args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	return serve.Run(ctx, cfg, serve.Service{
		Name:   procurement.Name,
		Short:  "procurement",
		Stream: procurement.Stream,
		New: func(d serve.Deps) (serve.Wired, error) {
			return procurement.New(procurement.Deps{JS: d.JS, DB: d.DB, Log: d.Log, Requests: d.Requests})
		},
	}, stderr)
}
