// Package deadletter parks events that a handler or a projection could not
// process, and lets operators list, inspect and settle them.
//
// Dead letters live in one JetStream stream (DEADLETTER, subjects
// deadletter.>, file storage). A dead letter is a copy of the original
// event (its payload and envelope headers) plus Furrow-Dead-Letter-*
// headers saying who gave up on it, why, and where the original is: the
// source stream and sequence stay the key, the copy only saves a look-up.
//
// The stream is append-only like every Furrow stream: a dead letter is
// never edited. When an operator redrives one and it succeeds, a
// resolution marker is appended on deadletter.resolved.<seq>, so the
// history of what failed and who settled it when stays readable.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subjects of the dead-letter stream.
const (
	// Stream is the dead-letter stream's name.
	Stream = "DEADLETTER"
	// Subjects covers every dead letter and resolution marker.
	Subjects = "deadletter.>"
	// resolvedPrefix starts the subject of resolution markers.
	resolvedPrefix = "deadletter.resolved."
)

// Headers a dead letter carries besides the original event's headers.
const (
	HeaderReason    = "Furrow-Dead-Letter-Reason"
	HeaderHandler   = "Furrow-Dead-Letter-Handler"
	HeaderStream    = "Furrow-Dead-Letter-Stream"
	HeaderSequence  = "Furrow-Dead-Letter-Sequence"
	HeaderSubject   = "Furrow-Dead-Letter-Subject"
	HeaderDelivered = "Furrow-Dead-Letter-Delivered"
	// HeaderKind is "handler" (a Watermill handler) or "projection";
	// absent on handler dead letters written before it existed.
	HeaderKind = "Furrow-Dead-Letter-Kind"
	// HeaderCopy is the projection copy (version) that failed.
	HeaderCopy = "Furrow-Dead-Letter-Copy"
	// HeaderPolicy is what the projection did next: "stop" or "skip".
	HeaderPolicy = "Furrow-Dead-Letter-Policy"
	// HeaderStoredAt is when the source stream stored the original event.
	HeaderStoredAt = "Furrow-Dead-Letter-Stored-At"

	// Headers of a resolution marker.
	HeaderResolves = "Furrow-Resolves"
	HeaderOutcome  = "Furrow-Resolution"
	HeaderNote     = "Furrow-Resolution-Note"
)

// Kinds of consumers that park events.
const (
	KindHandler    = "handler"
	KindProjection = "projection"
)

// MaxReasonLen bounds the reason header: a panic's stack trace belongs in
// the log, not in every parked message.
const MaxReasonLen = 1024

// ErrNotFound means there is no dead letter at that sequence.
var ErrNotFound = errors.New("deadletter: no such dead letter")

// Letter is a parked event.
type Letter struct {
	// Seq is the dead letter's sequence in the DEADLETTER stream: its id.
	Seq uint64
	// Subject is where it was parked, e.g. deadletter.handlers.
	Subject  string
	ParkedAt time.Time
	// Kind is KindHandler or KindProjection.
	Kind string
	// Consumer is the handler's or the projection's name.
	Consumer string
	// Copy is the projection copy (version) that failed; 0 for handlers.
	Copy int64
	// Policy is what a projection did next ("stop" or "skip").
	Policy        string
	SourceStream  string
	SourceSeq     uint64
	SourceSubject string
	// SourceTime is when the source stream stored the event (zero if unknown).
	SourceTime time.Time
	Reason     string
	// Attempts is how many times the event was tried before it was parked.
	Attempts int
	// Header holds the original event's headers and the dead-letter headers.
	Header nats.Header
	Data   []byte
	// Resolution is set once the dead letter has been settled.
	Resolution *Resolution
}

// Resolution records how a dead letter was settled.
type Resolution struct {
	// Outcome is e.g. "redriven" or "already-applied".
	Outcome string
	Note    string
	At      time.Time
	// Seq is the marker's sequence in the DEADLETTER stream.
	Seq uint64
}

// Parked reports whether the dead letter still waits for an operator.
func (l Letter) Parked() bool { return l.Resolution == nil }

// StreamConfig is the dead-letter stream's configuration. Dead letters
// are evidence like the events they copy: the stream denies deletes and
// purges and no limit drops them.
func StreamConfig(replicas int) jetstream.StreamConfig {
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "Furrow dead letters: events a handler or projection gave up on, and their resolutions",
		Subjects:    []string{Subjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Replicas:    replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// EnsureStream creates the dead-letter stream if it does not exist. An
// existing stream is left as it is (wmjs may have added subjects to it).
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, StreamConfig(1))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("deadletter: ensure stream %s: %w", Stream, err)
	}
	return nil
}

// HeaderValue makes s fit in one header line of bounded length.
func HeaderValue(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " | ")
	if len(s) <= MaxReasonLen {
		return s
	}
	cut := MaxReasonLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Park stores l on subject (l.Seq, l.Subject, l.ParkedAt and l.Resolution
// are ignored) and returns its sequence. msgID de-duplicates a repeated
// park within the stream's duplicate window.
func Park(ctx context.Context, js jetstream.JetStream, subject, msgID string, l Letter) (uint64, error) {
	if err := EnsureStream(ctx, js); err != nil {
		return 0, err
	}
	m := nats.NewMsg(subject)
	m.Data = l.Data
	for k, v := range l.Header {
		if strings.HasPrefix(k, "Nats-") || len(v) == 0 {
			continue // control headers of the original publish would fail this one
		}
		m.Header.Set(k, v[0])
	}
	m.Header.Set(HeaderKind, l.Kind)
	m.Header.Set(HeaderHandler, l.Consumer)
	m.Header.Set(HeaderStream, l.SourceStream)
	m.Header.Set(HeaderSequence, strconv.FormatUint(l.SourceSeq, 10))
	m.Header.Set(HeaderSubject, l.SourceSubject)
	m.Header.Set(HeaderReason, HeaderValue(l.Reason))
	m.Header.Set(HeaderDelivered, strconv.Itoa(l.Attempts))
	if l.Copy != 0 {
		m.Header.Set(HeaderCopy, strconv.FormatInt(l.Copy, 10))
	}
	if l.Policy != "" {
		m.Header.Set(HeaderPolicy, l.Policy)
	}
	if !l.SourceTime.IsZero() {
		m.Header.Set(HeaderStoredAt, l.SourceTime.UTC().Format(time.RFC3339Nano))
	}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("deadletter: park %s:%d: %w", l.SourceStream, l.SourceSeq, err)
	}
	return ack.Sequence, nil
}

// Resolve appends a resolution marker for the dead letter at seq. Resolving
// twice keeps the first marker (the message id de-duplicates within the
// window; List keeps the earliest marker in any case).
func Resolve(ctx context.Context, js jetstream.JetStream, seq uint64, outcome, note string) error {
	m := nats.NewMsg(resolvedPrefix + strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderResolves, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderOutcome, outcome)
	if note != "" {
		m.Header.Set(HeaderNote, HeaderValue(note))
	}
	m.Header.Set(jetstream.MsgIDHeader, "resolved:"+strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("deadletter: resolve %d: %w", seq, err)
	}
	return nil
}

// Get returns the dead letter at seq, with its resolution if any.
func Get(ctx context.Context, js jetstream.JetStream, seq uint64) (Letter, error) {
	st, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Letter{}, fmt.Errorf("%w: %d (no dead letters yet)", ErrNotFound, seq)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("deadletter: get %d: %w", seq, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("deadletter: get %d: %w", seq, err)
	}
	if strings.HasPrefix(raw.Subject, resolvedPrefix) {
		return Letter{}, fmt.Errorf("%w: %d is a resolution marker", ErrNotFound, seq)
	}
	l := fromRaw(raw)
	marker, err := st.GetLastMsgForSubject(ctx, resolvedPrefix+strconv.FormatUint(seq, 10))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return Letter{}, fmt.Errorf("deadletter: resolution of %d: %w", seq, err)
	default:
		l.Resolution = resolutionFrom(marker.Sequence, marker.Time, marker.Header)
	}
	return l, nil
}

// List returns the dead letters in stream order, each with its resolution;
// consumer, if not empty, keeps only those of that handler or projection.
// It reads the stream with an ordered consumer up to the last message the
// stream held when List started.
func List(ctx context.Context, js jetstream.JetStream, consumer string) ([]Letter, error) {
	st, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deadletter: list: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	if st.CachedInfo().State.Msgs == 0 {
		return nil, nil
	}
	cons, err := js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("deadletter: list: %w", err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			_ = js.DeleteConsumer(context.WithoutCancel(ctx), Stream, info.Name)
		}
	}()
	var (
		letters []Letter
		index   = map[uint64]int{}
	)
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("deadletter: list: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("deadletter: list: %w", err)
			}
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp}
			if strings.HasPrefix(raw.Subject, resolvedPrefix) {
				target, _ := strconv.ParseUint(raw.Header.Get(HeaderResolves), 10, 64)
				if i, ok := index[target]; ok && letters[i].Resolution == nil {
					letters[i].Resolution = resolutionFrom(raw.Sequence, raw.Time, raw.Header)
				}
			} else if l := fromRaw(raw); consumer == "" || l.Consumer == consumer {
				index[l.Seq] = len(letters)
				letters = append(letters, l)
			}
			if raw.Sequence >= last {
				return letters, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("deadletter: list: %w", err)
		}
		if got == 0 {
			return letters, nil // the tail was deleted meanwhile
		}
	}
}

func resolutionFrom(seq uint64, at time.Time, h nats.Header) *Resolution {
	return &Resolution{Outcome: h.Get(HeaderOutcome), Note: h.Get(HeaderNote), At: at, Seq: seq}
}

func fromRaw(raw *jetstream.RawStreamMsg) Letter {
	h := withoutOwnServerHeaders(raw)
	kind := h.Get(HeaderKind)
	if kind == "" {
		kind = KindHandler
	}
	l := Letter{
		Seq: raw.Sequence, Subject: raw.Subject, ParkedAt: raw.Time,
		Kind: kind, Consumer: h.Get(HeaderHandler), Policy: h.Get(HeaderPolicy),
		SourceStream: h.Get(HeaderStream), SourceSubject: h.Get(HeaderSubject),
		Reason: h.Get(HeaderReason), Header: h, Data: raw.Data,
	}
	l.SourceSeq, _ = strconv.ParseUint(h.Get(HeaderSequence), 10, 64)
	l.Copy, _ = strconv.ParseInt(h.Get(HeaderCopy), 10, 64)
	l.Attempts, _ = strconv.Atoi(h.Get(HeaderDelivered))
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderStoredAt)); err == nil {
		l.SourceTime = t
	}
	return l
}

// withoutOwnServerHeaders returns raw's headers without those a direct get
// adds about the dead letter itself (its stream, sequence, subject and
// time), so that a Letter's Header holds the original event's headers and
// the dead-letter headers only, and decodes like the original event.
func withoutOwnServerHeaders(raw *jetstream.RawStreamMsg) nats.Header {
	own := map[string]string{
		"Nats-Stream": Stream, "Nats-Sequence": strconv.FormatUint(raw.Sequence, 10),
		"Nats-Subject": raw.Subject, "Nats-Time-Stamp": "",
	}
	h := nats.Header{}
	for k, vs := range raw.Header {
		want, server := own[k]
		for i, v := range vs {
			// One value each, the last: what this read added.
			if server && i == len(vs)-1 && (want == "" || v == want) {
				continue
			}
			h[k] = append(h[k], v)
		}
	}
	return h
}
