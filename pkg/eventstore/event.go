// Package eventstore appends events to JetStream and reads them back.
//
// JetStream is Furrow's source of truth: one stream per service, one subject
// per aggregate and event kind (for example ledger.farmer.F1.farmer_registered).
// Appends carry an optimistic-concurrency expectation over the aggregate's
// subjects and an idempotency key, so a command retried after a lost
// acknowledgement never writes a second event. The envelope (event type,
// schema version, ids, actor, trace context) travels in message headers and
// the payload is a protobuf message.
package eventstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names of the event envelope. NATS headers are case-sensitive; the
// W3C trace headers are written in lowercase as the specification spells them.
const (
	HeaderEventType     = "Furrow-Event-Type"
	HeaderSchemaVersion = "Furrow-Schema-Version"
	HeaderEventID       = "Furrow-Event-Id"
	HeaderCorrelationID = "Furrow-Correlation-Id"
	HeaderCausationID   = "Furrow-Causation-Id"
	HeaderActor         = "Furrow-Actor"
	HeaderOccurredAt    = "Furrow-Occurred-At"
	HeaderIdempotency   = "Furrow-Idempotency-Key"
	HeaderFingerprint   = "Furrow-Fingerprint"
	HeaderTraceParent   = "traceparent"
	HeaderTraceState    = "tracestate"
)

// Metadata is the causal context every event carries.
type Metadata struct {
	// CorrelationID ties together everything caused by one outside request.
	CorrelationID string
	// CausationID is the id of the event or request that directly caused this one.
	CausationID string
	// Actor names who asked for it (a platform client, an operator, a handler).
	Actor string
}

// Event is an event about to be appended.
type Event struct {
	// Subject is the full subject, e.g. "procurement.delivery.D1.recorded".
	Subject string
	// Type is the protobuf full name of the payload message.
	Type string
	// SchemaVersion is the payload's schema version (the proto package's vN).
	SchemaVersion int
	// ID is the event's unique id. Appends fill it in when empty.
	ID string
	// Data is the marshalled protobuf payload.
	Data []byte
	// OccurredAt is when the fact happened; Append fills in now when zero.
	OccurredAt time.Time
	Metadata   Metadata
	// Guard, when set, makes the whole atomic batch fail with ErrConflict
	// unless the last event on another aggregate is still where the
	// command read it: one append can then change two aggregates under
	// optimistic concurrency (the request's Aggregate and Expect check the
	// first). It is honoured on any event of a batch but the first (whose
	// expectation is the request's own); the event's subject must lie in
	// Guard.Filter. Such an event lies outside the request's Aggregate, so
	// group commit never lets the append share a batch (scopeOf): within a
	// shared batch the server would check a second append's guard on the
	// same aggregate against the stream as it was before the batch.
	Guard *Guard
}

// Guard is the expected version of an aggregate other than the one an
// append is made to: the last sequence on the subjects matching Filter
// (0: no event there yet).
type Guard struct {
	Filter  string
	Version uint64
}

// Recorded is an event read back from a stream, with its position.
type Recorded struct {
	Stream   string
	Sequence uint64
	Subject  string
	// Time is when the stream stored the message.
	Time time.Time

	Type           string
	SchemaVersion  int
	ID             string
	OccurredAt     time.Time
	Metadata       Metadata
	IdempotencyKey string
	Fingerprint    string
	Header         nats.Header
	Data           []byte
}

// Position names a point in one stream. Positions of different streams are
// not comparable.
type Position struct {
	Stream   string
	Sequence uint64
}

func (p Position) String() string { return p.Stream + ":" + strconv.FormatUint(p.Sequence, 10) }

// header builds the NATS headers for e.
func (e Event) header(idempotencyKey, fingerprint string) nats.Header {
	h := nats.Header{}
	h.Set(HeaderEventType, e.Type)
	h.Set(HeaderSchemaVersion, strconv.Itoa(e.SchemaVersion))
	h.Set(HeaderEventID, e.ID)
	h.Set(HeaderOccurredAt, e.OccurredAt.UTC().Format(time.RFC3339Nano))
	setIf(h, HeaderCorrelationID, e.Metadata.CorrelationID)
	setIf(h, HeaderCausationID, e.Metadata.CausationID)
	setIf(h, HeaderActor, e.Metadata.Actor)
	setIf(h, HeaderIdempotency, idempotencyKey)
	setIf(h, HeaderFingerprint, fingerprint)
	if e.Guard != nil {
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.Guard.Version, 10))
		h.Set(jetstream.ExpectedLastSubjSeqSubjHeader, e.Guard.Filter)
	}
	return h
}

func setIf(h nats.Header, k, v string) {
	if v != "" {
		h.Set(k, v)
	}
}

// FromMsg decodes the envelope of a stored message. It fails when the
// message lacks an event type or id, or carries a server's answer headers
// (reflected): such a message was not written by Furrow.
func FromMsg(stream string, seq uint64, subject string, stored time.Time, h nats.Header, data []byte) (Recorded, error) {
	if err := reflected(stream, seq, h); err != nil {
		return Recorded{}, err
	}
	r := Recorded{
		Stream: stream, Sequence: seq, Subject: subject, Time: stored,
		Type:           h.Get(HeaderEventType),
		ID:             h.Get(HeaderEventID),
		IdempotencyKey: h.Get(HeaderIdempotency),
		Fingerprint:    h.Get(HeaderFingerprint),
		Metadata: Metadata{
			CorrelationID: h.Get(HeaderCorrelationID),
			CausationID:   h.Get(HeaderCausationID),
			Actor:         h.Get(HeaderActor),
		},
		Header: h,
		Data:   data,
	}
	if r.Type == "" || r.ID == "" {
		return Recorded{}, fmt.Errorf("%w: %s seq %d has no event type or id", ErrNotAnEvent, stream, seq)
	}
	if v := h.Get(HeaderSchemaVersion); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Recorded{}, fmt.Errorf("%w: %s seq %d: schema version %q", ErrNotAnEvent, stream, seq, v)
		}
		r.SchemaVersion = n
	}
	if v := h.Get(HeaderOccurredAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return Recorded{}, fmt.Errorf("%w: %s seq %d: occurred-at %q", ErrNotAnEvent, stream, seq, v)
		}
		r.OccurredAt = t
	}
	return r, nil
}

// Headers the server puts on a stored message it sends in answer to a
// direct get.
const (
	headerServerStream   = "Nats-Stream"
	headerServerSequence = "Nats-Sequence"
)

// reflected fails when h holds a server's answer headers other than the
// ones a direct get of this very message adds: the message is then an
// answer someone addressed to a subject of this stream. Any user of the
// account can do that (a request's reply subject is not subject to
// permissions), e.g. by direct-getting a message it crafted in its own
// stream with a reply subject in ours; the stored answer keeps the
// crafted envelope, so only these headers betray it. An appended event
// never has them; read by direct get it has one of each, naming itself;
// delivered by a consumer it has none.
func reflected(stream string, seq uint64, h nats.Header) error {
	for key, want := range map[string]string{headerServerStream: stream, headerServerSequence: strconv.FormatUint(seq, 10)} {
		vs := h.Values(key)
		if len(vs) > 1 || (len(vs) == 1 && vs[0] != want) {
			return fmt.Errorf("%w: %s seq %d holds a server's answer (%s %s), not an appended event", ErrNotAnEvent, stream, seq, key, strings.Join(vs, ", "))
		}
	}
	return nil
}
