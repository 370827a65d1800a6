package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/wmjs"
)

// Limits of ListEvents.
const (
	defaultListLimit = 100
	maxListLimit     = 10_000
)

// ListStreams implements AdminService.
func (s *Server) ListStreams(ctx context.Context, _ *adminv1.ListStreamsRequest) (*adminv1.ListStreamsResponse, error) {
	lister := s.js.ListStreams(ctx)
	res := &adminv1.ListStreamsResponse{}
	for info := range lister.Info() {
		res.Streams = append(res.Streams, streamProto(info))
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	slices.SortFunc(res.Streams, func(a, b *adminv1.Stream) int { return strings.Compare(a.GetName(), b.GetName()) })
	return res, nil
}

func (s *Server) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == "" {
		return nil, failure.Invalid("stream", "name a stream")
	}
	st, err := s.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, failure.NotFound("stream", "no stream %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return st, nil
}

// GetStream implements AdminService.
func (s *Server) GetStream(ctx context.Context, req *adminv1.GetStreamRequest) (*adminv1.GetStreamResponse, error) {
	st, err := s.stream(ctx, req.GetStream())
	if err != nil {
		return nil, err
	}
	var opts []jetstream.StreamInfoOpt
	if req.GetSubjectsLimit() > 0 {
		opts = append(opts, jetstream.WithSubjectFilter(">"))
	}
	info, err := st.Info(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", req.GetStream(), err)
	}
	res := &adminv1.GetStreamResponse{Stream: streamProto(info)}
	for subj, n := range info.State.Subjects {
		res.Subjects = append(res.Subjects, &adminv1.SubjectCount{Subject: subj, Messages: n})
	}
	slices.SortFunc(res.Subjects, func(a, b *adminv1.SubjectCount) int {
		if a.GetMessages() != b.GetMessages() {
			return compareDesc(a.GetMessages(), b.GetMessages())
		}
		return strings.Compare(a.GetSubject(), b.GetSubject())
	})
	if n := int(req.GetSubjectsLimit()); len(res.Subjects) > n {
		res.Subjects = res.Subjects[:n]
	}
	// A clustered list of infos may name a consumer twice while its
	// leader moves; keep one row per name.
	seen := map[string]bool{}
	consumers := st.ListConsumers(ctx)
	for ci := range consumers.Info() {
		if seen[ci.Name] {
			continue
		}
		seen[ci.Name] = true
		c := &adminv1.Consumer{
			Name: ci.Name, FilterSubjects: ci.Config.FilterSubjects, AckFloor: ci.AckFloor.Stream,
			Pending: ci.NumPending, AckPending: uint64(ci.NumAckPending), Redelivered: uint64(ci.NumRedelivered),
		}
		if ci.Config.FilterSubject != "" {
			c.FilterSubjects = append(c.FilterSubjects, ci.Config.FilterSubject)
		}
		res.Consumers = append(res.Consumers, c)
	}
	if err := consumers.Err(); err != nil {
		return nil, fmt.Errorf("consumers of %s: %w", req.GetStream(), err)
	}
	slices.SortFunc(res.Consumers, func(a, b *adminv1.Consumer) int { return strings.Compare(a.GetName(), b.GetName()) })
	return res, nil
}

func compareDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	if a < b {
		return 1
	}
	return 0
}

// GetEvent implements AdminService.
func (s *Server) GetEvent(ctx context.Context, req *adminv1.GetEventRequest) (*adminv1.GetEventResponse, error) {
	st, err := s.stream(ctx, req.GetStream())
	if err != nil {
		return nil, err
	}
	if req.GetSequence() == 0 {
		return nil, failure.Invalid("sequence", "give the event's stream sequence (1 or more)")
	}
	raw, err := st.GetMsg(ctx, req.GetSequence())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, failure.NotFound("sequence", "no event %s:%d", req.GetStream(), req.GetSequence())
	}
	if err != nil {
		return nil, fmt.Errorf("get %s:%d: %w", req.GetStream(), req.GetSequence(), err)
	}
	return &adminv1.GetEventResponse{Event: eventProto(req.GetStream(), raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data)}, nil
}

// eventStreams lists the streams ListEvents searches when none is named:
// every stream but the dead letters.
func (s *Server) eventStreams(ctx context.Context) ([]string, error) {
	names := s.js.StreamNames(ctx)
	var out []string
	for n := range names.Name() {
		if n != deadletter.Stream {
			out = append(out, n)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// subjectToken is a valid single subject token.
func subjectToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// ListEvents implements AdminService.
func (s *Server) ListEvents(ctx context.Context, req *adminv1.ListEventsRequest) (*adminv1.ListEventsResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultListLimit
	case limit < 0 || limit > maxListLimit:
		return nil, failure.Invalid("limit", "want 1 to %d", maxListLimit)
	}
	agg := req.GetAggregate()
	if agg != "" && !subjectToken(agg) {
		return nil, failure.Invalid("aggregate", "an aggregate id is one subject token (no '.', '*', '>' or spaces)")
	}
	filter := req.GetSubject()
	if filter == "" {
		filter = ">"
		if agg != "" {
			filter = "*.*." + agg + ".*"
		}
	}
	streams := []string{req.GetStream()}
	if req.GetStream() == "" {
		var err error
		if streams, err = s.eventStreams(ctx); err != nil {
			return nil, err
		}
	}
	res := &adminv1.ListEventsResponse{}
	for _, name := range streams {
		st, err := s.stream(ctx, name)
		if err != nil {
			return nil, err
		}
		// Listing reads with direct gets, which the stream must allow
		// (Furrow's event streams do).
		if !st.CachedInfo().Config.AllowDirect {
			if req.GetStream() != "" {
				return nil, failure.FailedPrecondition("stream %s does not allow direct gets; read single events with GetEvent (furrow events get)", name)
			}
			continue
		}
		next := req.GetAfterSequence() + 1
		for {
			want := min(512, limit-len(res.GetEvents())+1)
			msgs, err := jetstreamext.GetBatch(ctx, s.js, name, want, jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(filter))
			if err != nil {
				return nil, fmt.Errorf("list %s on %s: %w", name, filter, err)
			}
			got := 0
			var pending uint64
			for raw, err := range msgs {
				if errors.Is(err, jetstreamext.ErrNoMessages) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("list %s on %s: %w", name, filter, err)
				}
				got++
				next = raw.Sequence + 1
				pending, _ = strconv.ParseUint(raw.Header.Get("Nats-Num-Pending"), 10, 64)
				if agg != "" && !hasAggregate(raw.Subject, agg) {
					continue
				}
				if len(res.Events) == limit {
					res.Truncated = true
					return res, nil
				}
				res.Events = append(res.Events, eventProto(name, raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data))
			}
			if got == 0 || pending == 0 {
				break
			}
		}
	}
	return res, nil
}

// hasAggregate reports whether subject <service>.<type>.<id>.<kind> names agg.
func hasAggregate(subject, agg string) bool {
	toks := strings.Split(subject, ".")
	return len(toks) >= 3 && toks[2] == agg
}

// TailEvents implements AdminService.
func (s *Server) TailEvents(req *adminv1.TailEventsRequest, stream grpc.ServerStreamingServer[adminv1.TailEventsResponse]) error {
	ctx := stream.Context()
	st, err := s.stream(ctx, req.GetStream())
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if f := req.GetSubject(); f != "" {
		cfg.FilterSubjects = []string{f}
	}
	switch head := st.CachedInfo().State.LastSeq; {
	case req.GetFromSequence() > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, req.GetFromSequence()
	case req.GetLast() > 0 && req.GetSubject() == "":
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = 1
		if head > uint64(req.GetLast()) {
			cfg.OptStartSeq = head - uint64(req.GetLast()) + 1
		}
	case req.GetLast() > 0:
		// With a filter, "the last n" are counted among its matches.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.nthLast(ctx, req.GetStream(), req.GetSubject(), uint64(req.GetLast()), head)
	}
	cons, err := s.js.OrderedConsumer(ctx, req.GetStream(), cfg)
	if err != nil {
		return fmt.Errorf("tail %s: %w", req.GetStream(), err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = s.js.DeleteConsumer(dctx, req.GetStream(), info.Name)
		}
	}()
	msgs, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tail %s: %w", req.GetStream(), err)
	}
	defer msgs.Stop()
	defer context.AfterFunc(ctx, msgs.Stop)()
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil // the client went away
			}
			return fmt.Errorf("tail %s: %w", req.GetStream(), err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("tail %s: %w", req.GetStream(), err)
		}
		ev := eventProto(req.GetStream(), md.Sequence.Stream, m.Subject(), md.Timestamp, m.Headers(), m.Data())
		if err := stream.Send(&adminv1.TailEventsResponse{Event: ev}); err != nil {
			return nil
		}
	}
}

// nthLast finds where the last n events on filter start (1 if fewer).
func (s *Server) nthLast(ctx context.Context, stream, filter string, n, head uint64) uint64 {
	// Walk back in windows; streams are append-only, so this terminates.
	from := uint64(1)
	for window := n * 4; ; window *= 4 {
		if head > window {
			from = head - window + 1
		} else {
			from = 1
		}
		var seqs []uint64
		next := from
		for {
			msgs, err := jetstreamext.GetBatch(ctx, s.js, stream, 512, jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(filter))
			if err != nil {
				return from
			}
			got := 0
			for raw, err := range msgs {
				if err != nil {
					break
				}
				got++
				seqs = append(seqs, raw.Sequence)
				next = raw.Sequence + 1
			}
			if got == 0 || next > head {
				break
			}
		}
		if uint64(len(seqs)) >= n {
			return seqs[uint64(len(seqs))-n]
		}
		if from == 1 {
			return 1
		}
	}
}

// eventProto decodes a stored message for people: envelope fields and the
// payload as protobuf JSON when its type is linked into this binary.
func eventProto(stream string, seq uint64, subject string, stored time.Time, h nats.Header, data []byte) *adminv1.Event {
	ev := &adminv1.Event{
		Stream: stream, Sequence: seq, Subject: subject, StoredAt: timestamppb.New(stored),
		Headers: map[string]string{}, Payload: data,
	}
	for k, v := range h {
		if len(v) > 0 {
			ev.Headers[k] = v[0]
		}
	}
	rec, err := eventstore.FromMsg(stream, seq, subject, stored, h, data)
	if err != nil {
		ev.PayloadError = err.Error()
		return ev
	}
	ev.Type, ev.SchemaVersion, ev.Id = rec.Type, int32(rec.SchemaVersion), rec.ID
	if !rec.OccurredAt.IsZero() {
		ev.OccurredAt = timestamppb.New(rec.OccurredAt)
	}
	ev.CorrelationId, ev.CausationId, ev.Actor = rec.Metadata.CorrelationID, rec.Metadata.CausationID, rec.Metadata.Actor
	ev.IdempotencyKey = rec.IdempotencyKey
	msg, err := eventstore.Decode(rec)
	if err != nil {
		ev.PayloadError = err.Error()
		return ev
	}
	if maskPersonal(msg.ProtoReflect()) {
		// The raw payload too: it is what a client could decode itself.
		masked, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			ev.PayloadError = err.Error()
			ev.Payload = nil
			return ev
		}
		ev.Payload = masked
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		ev.PayloadError = err.Error()
		return ev
	}
	ev.PayloadJson = string(js)
	return ev
}

// maskPersonal masks, in place, every string field of m (and of the
// messages it holds) that is marked (furrow.types.v1.personal): personal
// data an event written before the ledger sealed it holds in clear. It
// reports whether it changed anything.
func maskPersonal(m protoreflect.Message) bool {
	changed := false
	var personal []protoreflect.FieldDescriptor // set after Range: no changes while it runs
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() && isPersonal(fd):
			personal = append(personal, fd)
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := range l.Len() {
				changed = maskPersonal(l.Get(i).Message()) || changed
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			changed = maskPersonal(v.Message()) || changed
		}
		return true
	})
	for _, fd := range personal {
		m.Set(fd, protoreflect.ValueOfString(mask(m.Get(fd).String())))
	}
	return changed || len(personal) > 0
}

func isPersonal(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	return ok && opts != nil && proto.GetExtension(opts, typesv1.E_Personal).(bool)
}

// mask keeps a value's last four characters ("••••0201").
func mask(v string) string {
	r := []rune(v)
	if len(r) <= 4 {
		return "••••"
	}
	return "••••" + string(r[len(r)-4:])
}

func streamProto(info *jetstream.StreamInfo) *adminv1.Stream {
	c, st := info.Config, info.State
	storage := "file"
	if c.Storage == jetstream.MemoryStorage {
		storage = "memory"
	}
	out := &adminv1.Stream{
		Name: c.Name, Subjects: c.Subjects, Messages: st.Msgs, Bytes: st.Bytes,
		FirstSequence: st.FirstSeq, LastSequence: st.LastSeq,
		SubjectCount: st.NumSubjects, ConsumerCount: uint32(st.Consumers),
		Storage: storage, Replicas: int32(c.Replicas), DuplicateWindow: durationpb.New(c.Duplicates),
		DenyDelete: c.DenyDelete, DenyPurge: c.DenyPurge, AllowDirect: c.AllowDirect,
		AllowAtomicPublish: c.AllowAtomicPublish, CreatedAt: timestamppb.New(info.Created),
	}
	if !st.FirstTime.IsZero() && st.Msgs > 0 {
		out.FirstTime = timestamppb.New(st.FirstTime)
	}
	if !st.LastTime.IsZero() && st.Msgs > 0 {
		out.LastTime = timestamppb.New(st.LastTime)
	}
	return out
}

// handlerMessage rebuilds the Watermill message a handler got from its
// subscriber, from the dead letter's copy of the event.
func handlerMessage(ctx context.Context, l deadletter.Letter) (*message.Message, error) {
	if l.SourceStream == "" || l.SourceSeq == 0 {
		return nil, errors.New("it does not name its source stream and sequence")
	}
	id := l.Header.Get(eventstore.HeaderEventID)
	if id == "" {
		id = eventstore.Position{Stream: l.SourceStream, Sequence: l.SourceSeq}.String()
	}
	m := message.NewMessageWithContext(ctx, id, l.Data)
	for k, v := range l.Header {
		if strings.HasPrefix(k, "Furrow-Dead-Letter-") || strings.HasPrefix(k, "Nats-") || len(v) == 0 {
			continue
		}
		m.Metadata.Set(k, v[0])
	}
	at := l.SourceTime
	if at.IsZero() {
		at = l.ParkedAt
	}
	m.Metadata.Set(wmjs.MetaStream, l.SourceStream)
	m.Metadata.Set(wmjs.MetaSequence, strconv.FormatUint(l.SourceSeq, 10))
	m.Metadata.Set(wmjs.MetaSubject, l.SourceSubject)
	m.Metadata.Set(wmjs.MetaDelivered, strconv.Itoa(l.Attempts+1))
	m.Metadata.Set(wmjs.MetaTimestamp, at.UTC().Format(time.RFC3339Nano))
	return m, nil
}
