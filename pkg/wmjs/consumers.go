package wmjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Durable consumers, like streams, are created and updated only by an
// admin identity (ApplyConsumer, run by `furrow admin streams apply` and
// by `furrow dev`); a production process binds to them (Config.Bind) and
// checks them with VerifyConsumer.

// VerifyConsumer binds to the durable consumer cfg describes and checks
// that it still has the settings the handler relies on (CheckConsumer).
// A missing consumer is jetstream.ErrConsumerNotFound, a drifted one
// eventstore.ErrDrift naming each setting.
func VerifyConsumer(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Consumer, error) {
	want, err := cfg.Consumer()
	if err != nil {
		return nil, err
	}
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if err != nil {
		return nil, fmt.Errorf("wmjs: consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	if problems := CheckConsumer(cons.CachedInfo().Config, want); len(problems) > 0 {
		return nil, fmt.Errorf("%w: consumer %s on %s: %s (an admin fixes it with `furrow admin streams apply`)",
			eventstore.ErrDrift, cfg.Durable, cfg.Stream, strings.Join(problems, "; "))
	}
	return cons, nil
}

// CheckConsumer lists how the durable consumer have differs from want in
// what a handler relies on, one problem per setting named by its JSON
// name: a durable pull consumer with explicit acks from the start of the
// stream, want's ack wait, delivery bound and ack-pending bound (1 keeps a
// handler in stream order), exactly want's filter subjects, whole messages,
// and no inactivity threshold that would delete it.
func CheckConsumer(have, want jetstream.ConsumerConfig) []string {
	var out []string
	bad := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	bad(have.Durable != want.Durable, "durable_name is %q, want %q", have.Durable, want.Durable)
	bad(have.AckPolicy != want.AckPolicy, "ack_policy is %s, want %s", have.AckPolicy, want.AckPolicy)
	bad(have.DeliverPolicy != want.DeliverPolicy, "deliver_policy is %s, want %s", have.DeliverPolicy, want.DeliverPolicy)
	bad(have.AckWait != want.AckWait, "ack_wait is %s, want %s", have.AckWait, want.AckWait)
	bad(have.MaxDeliver != want.MaxDeliver, "max_deliver is %d, want %d", have.MaxDeliver, want.MaxDeliver)
	bad(have.MaxAckPending != want.MaxAckPending, "max_ack_pending is %d, want %d", have.MaxAckPending, want.MaxAckPending)
	if h, w := filters(have), filters(want); !slices.Equal(h, w) {
		out = append(out, fmt.Sprintf("filter_subjects are [%s], want [%s]", strings.Join(h, ", "), strings.Join(w, ", ")))
	}
	bad(have.DeliverSubject != "", "deliver_subject is %q: a push consumer, want pull", have.DeliverSubject)
	bad(have.HeadersOnly, "headers_only is true: handlers would get no payloads")
	bad(len(have.BackOff) > 0, "backoff is set, want none (the handler's nak delays pace redelivery)")
	bad(have.InactiveThreshold > 0, "inactive_threshold is %s: the server would delete the durable when idle", have.InactiveThreshold)
	bad(have.MemoryStorage, "mem_storage is true: its progress would not survive a restart")
	return out
}

// filters returns a consumer's filter subjects sorted, whichever field
// holds them.
func filters(c jetstream.ConsumerConfig) []string {
	out := slices.Clone(c.FilterSubjects)
	if c.FilterSubject != "" {
		out = append(out, c.FilterSubject)
	}
	sort.Strings(out)
	return out
}

// ApplyConsumer creates the durable consumer cfg describes, or brings an
// existing one to it, and says which settings it changed; a second run is
// Unchanged. Settings cfg does not speak about (a pause, metadata) are
// kept. The server refuses changes it cannot make in place (the deliver
// policy); those need the consumer deleted first, which replays its
// stream to the handler.
func ApplyConsumer(ctx context.Context, js jetstream.JetStream, cfg Config) (eventstore.ApplyResult, error) {
	res := eventstore.ApplyResult{Name: cfg.Stream + "/" + cfg.Durable}
	want, err := cfg.Consumer()
	if err != nil {
		return res, err
	}
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := js.CreateConsumer(ctx, cfg.Stream, want); err != nil {
			return res, fmt.Errorf("create consumer %s: %w", res.Name, err)
		}
		res.Change = eventstore.Created
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("consumer %s: %w", res.Name, err)
	}
	have := cons.CachedInfo().Config
	next := have
	next.Durable = want.Durable
	next.AckPolicy = want.AckPolicy
	next.DeliverPolicy = want.DeliverPolicy
	next.AckWait = want.AckWait
	next.MaxDeliver = want.MaxDeliver
	next.MaxAckPending = want.MaxAckPending
	next.FilterSubject, next.FilterSubjects = "", want.FilterSubjects
	if slices.Equal(filters(have), filters(want)) {
		next.FilterSubject, next.FilterSubjects = have.FilterSubject, have.FilterSubjects
	}
	next.DeliverSubject = ""
	next.HeadersOnly = false
	next.BackOff = nil
	next.InactiveThreshold = 0
	next.MemoryStorage = false
	res.Fields = consumerChanges(have, next)
	if len(res.Fields) == 0 {
		res.Change = eventstore.Unchanged
		return res, nil
	}
	if _, err := js.UpdateConsumer(ctx, cfg.Stream, next); err != nil {
		return res, fmt.Errorf("update consumer %s (%s): %w", res.Name, strings.Join(res.Fields, "; "), err)
	}
	res.Change = eventstore.Updated
	return res, nil
}

// consumerChanges lists the settings that differ by their JSON names,
// ignoring the server's own metadata.
func consumerChanges(a, b jetstream.ConsumerConfig) []string {
	a.Metadata, b.Metadata = nil, nil
	return eventstore.FieldChanges(a, b)
}
