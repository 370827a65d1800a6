package wmjs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher is a Watermill Publisher that writes each message to JetStream
// and waits for the stream's ack, so a nil error means the message is
// stored. The topic is the subject. Metadata becomes headers (except the
// Subscriber's per-delivery keys); when the metadata sets no Nats-Msg-Id the
// message UUID is used, so republishing the same message after a lost ack
// is de-duplicated by the stream.
//
// Publisher holds no state of its own and is safe for concurrent use.
type Publisher struct {
	js jetstream.JetStream
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher over js.
func NewPublisher(js jetstream.JetStream) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("wmjs: a JetStream handle is required")
	}
	return &Publisher{js: js}, nil
}

// Publish stores msgs on subject, in order, each with its own context.
// It stops at the first failure.
func (p *Publisher) Publish(subject string, msgs ...*message.Message) error {
	for _, m := range msgs {
		nm, err := natsMsg(subject, m)
		if err != nil {
			return err
		}
		if _, err := p.js.PublishMsg(m.Context(), nm); err != nil {
			return fmt.Errorf("wmjs: publish %s to %s: %w", m.UUID, subject, err)
		}
	}
	return nil
}

// Close does nothing: the Publisher does not own the connection.
func (p *Publisher) Close() error { return nil }

func natsMsg(subject string, m *message.Message) (*nats.Msg, error) {
	nm := nats.NewMsg(subject)
	nm.Data = m.Payload
	for k, v := range m.Metadata {
		if transportKeys[k] {
			continue
		}
		// A CR or LF would end the header block early and corrupt the
		// message on the wire; refuse rather than alter it.
		if k == "" || strings.ContainsAny(k, ": \t\r\n") || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("wmjs: message %s: metadata %q is not a valid NATS header", m.UUID, k)
		}
		nm.Header.Set(k, v)
	}
	if nm.Header.Get(jetstream.MsgIDHeader) == "" && m.UUID != "" {
		nm.Header.Set(jetstream.MsgIDHeader, m.UUID)
	}
	return nm, nil
}
