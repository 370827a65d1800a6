// Command brand-incubation runs the brand-incubation service in production
// shape: one of several stateless replicas against a JetStream cluster and
// PostgreSQL, serving gRPC with mutual TLS. `brand-incubation -h` lists the
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

	brand "github.com/furrow/furrow/services/brand-incubation/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "brand-incubation:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := serve.ParseConfig(brand.Name, args, getenv, stderr, nil)
	if err != nil {
		return err
	}
	return serve.Run(ctx, cfg, serve.Service{
		Name:      brand.Name,
		Short:     "brand",
		Stream:    brand.Stream,
		Consumers: brand.Consumers(),
		New: func(d serve.Deps) (serve.Wired, error) {
			return brand.New(brand.Deps{JS: d.JS, DB: d.DB, Router: d.Router, Log: d.Log, BindConsumers: true})
		},
	}, stderr)
}
