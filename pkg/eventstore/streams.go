package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamSpec describes a service's event stream.
type StreamSpec struct {
	// Name is the stream name, e.g. "PROCUREMENT".
	Name string
	// Subjects are the stream's subjects, e.g. "procurement.>".
	Subjects []string
	// Replicas is 1 for a single server and 3 for a production cluster.
	Replicas int
	// Description is shown by `nats stream ls`; a default names the stream.
	Description string
	// DuplicateWindow is how long the server de-duplicates Nats-Msg-Id;
	// zero keeps the server default (2 minutes).
	DuplicateWindow time.Duration
}

// Config is the JetStream configuration Furrow insists on for an event
// stream: file storage, nothing ever deleted or purged, direct gets for
// loading aggregates, atomic batches for multi-event appends.
func (s StreamSpec) Config() jetstream.StreamConfig {
	replicas := s.Replicas
	if replicas == 0 {
		replicas = 1
	}
	desc := s.Description
	if desc == "" {
		desc = "Furrow events, source of truth: " + strings.Join(s.Subjects, ", ")
	}
	return jetstream.StreamConfig{
		Name:               s.Name,
		Description:        desc,
		Subjects:           s.Subjects,
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		Replicas:           replicas,
		Duplicates:         s.DuplicateWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

// EnsureStreams creates each stream or updates it to its spec.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, specs ...StreamSpec) error {
	for _, spec := range specs {
		cfg := spec.Config()
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = js.UpdateStream(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", spec.Name, err)
		}
	}
	return nil
}
