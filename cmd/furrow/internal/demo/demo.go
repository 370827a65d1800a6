// Package demo loads a small, believable data set into a running Furrow,
// the way a farm platform would: through the public gRPC API only. It tells
// the stories of the design brief — Qinglong chestnuts, Xunwu navel oranges
// and Yongshun berry tea bought under one direct-purchase programme.
//
// Every command carries a fixed request id and fixed content (times
// included), so loading twice changes nothing: the second run's commands
// are recognised as retries and answered with the first run's results.
//
// The demo is a list of steps run in order. A part of Furrow that wants
// demo data (brands, payouts) adds a step: a function that uses the
// connection and returns an error. Steps may rely on the steps before them.
package demo

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
)

// Step is one part of the demo.
type Step struct {
	// Name says what the step loads, for errors and logs.
	Name string
	// Run loads it. It must be idempotent: fixed request ids and content.
	Run func(ctx context.Context, conn *grpc.ClientConn) error
}

// steps are the demo's parts, in the order they run.
var steps = []Step{
	{Name: "farmers", Run: registerFarmers},
	{Name: "procurement", Run: loadProcurement},
}

// Steps returns the demo's parts, in the order Load runs them.
func Steps() []Step { return append([]Step(nil), steps...) }

// Load runs every step against conn, stopping at the first failure.
func Load(ctx context.Context, conn *grpc.ClientConn) error {
	for _, s := range steps {
		if err := s.Run(ctx, conn); err != nil {
			return fmt.Errorf("demo %s: %w", s.Name, err)
		}
	}
	return nil
}
