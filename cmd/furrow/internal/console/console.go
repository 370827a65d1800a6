// Package console is Furrow's web console for operators, finance and brand
// managers: server-rendered Go templates with htmx, charts drawn by
// Chart.js, everything embedded in the binary (go:embed), so it works
// offline. It calls the services through their gRPC clients (Backends),
// never their stores.
package console

import (
	"errors"
	"log/slog"
	"net/http"
)

// Config configures the console.
type Config struct {
	Backends Backends
	Log      *slog.Logger
	// Dev: furrow dev on loopback, no login; every page and action is open.
	Dev bool
}

// New returns the console's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Backends.Procurement == nil || cfg.Backends.Brand == nil || cfg.Backends.Ledger == nil || len(cfg.Backends.Admin) == 0 {
		return nil, errors.New("console: every backend is required")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("Furrow console\n")) })
	return mux, nil
}
