// Package provision is the admin side of Furrow's event log: the streams,
// the ledger's key bucket, the request-id and aggregate snapshot buckets
// and the durable consumers a deployment needs, and the one place that creates
// or changes them. `furrow admin streams apply` runs it as the NATS admin
// user before the services start (they only verify what it made, and their
// NATS users may not change it); `furrow dev` runs it against its embedded
// server, of which it is the admin.
package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/requests"
	"github.com/furrow/furrow/pkg/wmjs"

	brand "github.com/furrow/furrow/services/brand-incubation/service"
	ledgeradapters "github.com/furrow/furrow/services/farmer-ledger/adapters"
	ledger "github.com/furrow/furrow/services/farmer-ledger/service"
	procurement "github.com/furrow/furrow/services/procurement/service"
)

// Streams returns the configuration of every stream with replicas
// replicas: the three services' event streams and DEADLETTER.
func Streams(replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		procurement.Stream(replicas).Config(),
		brand.Stream(replicas).Config(),
		ledger.Stream(replicas).Config(),
		deadletter.StreamConfig(replicas),
	}
}

// Buckets returns the key-value bucket of each service's request ids
// (pkg/requests), with replicas replicas.
func Buckets(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		requests.Config(procurement.Stream(replicas).Name, replicas, 0),
		requests.Config(brand.Stream(replicas).Name, replicas, 0),
		requests.Config(ledger.Stream(replicas).Name, replicas, 0),
	}
}

// SnapshotBuckets returns the key-value bucket of each service's
// aggregate snapshots (pkg/aggregate: the ledger's and procurement's), with
// replicas replicas. The services bind them (aggregate.BindSnapshots) and
// replay aggregates whole without them.
func SnapshotBuckets(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		aggregate.SnapshotBucket(procurement.SnapshotBucket, replicas),
		aggregate.SnapshotBucket(ledger.SnapshotBucket, replicas),
	}
}

// Consumer is a handler's durable consumer.
type Consumer struct {
	// Service is the NATS user of the service whose handler consumes it
	// (deploy/nats/accounts.conf): the only one that may pull and ack it.
	Service string
	wmjs.Config
}

// Consumers returns every handler's durable consumer.
func Consumers() []Consumer {
	var out []Consumer
	for _, c := range ledger.Consumers() {
		out = append(out, Consumer{Service: "ledger", Config: c})
	}
	for _, c := range brand.Consumers() {
		out = append(out, Consumer{Service: "brand", Config: c})
	}
	return out
}

// Options says how Apply provisions.
type Options struct {
	// Replicas every stream has; 1 for a single server.
	Replicas int
	// ApplyOptions permit changes Apply refuses by default (lowering an
	// existing stream's replicas, dropping subjects).
	eventstore.ApplyOptions
}

// Result is what Apply did to one stream or consumer.
type Result struct {
	// Kind is "stream" or "consumer".
	Kind string
	eventstore.ApplyResult
}

// String is how `furrow admin streams apply` prints r.
func (r Result) String() string {
	s := fmt.Sprintf("%s %s: %s", r.Kind, r.Name, r.Change)
	for _, f := range r.Fields {
		s += "\n  " + f
	}
	return s
}

// Apply creates every stream, bucket (the ledger's keys, request ids,
// aggregate snapshots) and durable consumer, or brings each to its
// configuration; a second run changes nothing. It goes on past a stream
// or bucket it refuses to change (eventstore.ErrRefused) and returns every
// result and every error; consumers of such a stream are left alone.
func Apply(ctx context.Context, js jetstream.JetStream, opts Options) ([]Result, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	var (
		results []Result
		errs    []error
		failed  = map[string]bool{}
	)
	for _, cfg := range Streams(opts.Replicas) {
		res, err := eventstore.ApplyStream(ctx, js, cfg, opts.ApplyOptions)
		if err != nil {
			errs = append(errs, err)
			failed[cfg.Name] = true
			continue
		}
		results = append(results, Result{Kind: "stream", ApplyResult: res})
	}
	// The ledger's key bucket (the farmers' data keys its personal data
	// is sealed under): made once, never changed (its purges are the
	// ledger's erasures).
	if created, err := ledgeradapters.EnsureKeyBucket(ctx, js, opts.Replicas); err != nil {
		errs = append(errs, err)
	} else {
		change := eventstore.Unchanged
		if created {
			change = eventstore.Created
		}
		results = append(results, Result{Kind: "key bucket", ApplyResult: eventstore.ApplyResult{Name: ledgeradapters.KeyBucket, Change: change}})
	}
	for _, cfg := range Buckets(opts.Replicas) {
		res, err := requests.Apply(ctx, js, cfg, opts.ApplyOptions)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, Result{Kind: "bucket", ApplyResult: res})
	}
	for _, cfg := range SnapshotBuckets(opts.Replicas) {
		res, err := aggregate.ApplySnapshotBucket(ctx, js, cfg, opts.ApplyOptions)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, Result{Kind: "bucket", ApplyResult: res})
	}
	for _, c := range Consumers() {
		if failed[c.Stream] {
			continue
		}
		res, err := wmjs.ApplyConsumer(ctx, js, c.Config)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, Result{Kind: "consumer", ApplyResult: res})
	}
	return results, errors.Join(errs...)
}
