package domain

import (
	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/limits"
)

// Channel is a retail channel that reports branded sales (e.g. "hema"),
// rebuilt from its events.
//
// Channels are registered explicitly rather than coming into being with
// the first rule that names one: a mistyped channel ("hemma") in a rule or
// a report is then refused as NotFound instead of silently starting a rule
// set that no sale ever matches.
type Channel struct {
	id         string
	registered *brandevents.ChannelRegistered
	version    uint64
}

var _ Aggregate = (*Channel)(nil)

// NewChannel returns the empty aggregate for id, ready to replay events.
func NewChannel(id string) *Channel { return &Channel{id: id} }

// Filter implements Aggregate.
func (c *Channel) Filter() string { return filter(TypeChannel, c.id) }

// Subject implements Aggregate.
func (c *Channel) Subject(kind string) string { return subject(TypeChannel, c.id, kind) }

// Apply implements Aggregate.
func (c *Channel) Apply(seq uint64, ev proto.Message) {
	c.version = seq
	if e, ok := ev.(*brandevents.ChannelRegistered); ok {
		c.registered = e
	}
}

// Version implements Aggregate.
func (c *Channel) Version() uint64 { return c.version }

// ID returns the channel id.
func (c *Channel) ID() string { return c.id }

// Registered reports whether the channel exists.
func (c *Channel) Registered() bool { return c.registered != nil }

// Name returns the channel's display name.
func (c *Channel) Name() string { return c.registered.GetName() }

// Register validates a registration and returns its event.
func (c *Channel) Register(name string) (*brandevents.ChannelRegistered, error) {
	if err := ident.Check("channel_id", c.id); err != nil {
		return nil, err
	}
	if err := requiredText("name", name, limits.MaxNameLen); err != nil {
		return nil, err
	}
	if c.registered != nil {
		return nil, failure.AlreadyExists("channel_id", "channel %s is already registered", c.id)
	}
	return &brandevents.ChannelRegistered{ChannelId: c.id, Name: name}, nil
}
