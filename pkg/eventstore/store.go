package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/furrow/furrow/pkg/telemetry"
)

// MaxBatch is the most events one Append may carry: the server's limit for
// an atomic batch.
const MaxBatch = 1000

// loadBatch is how many messages one direct-get request asks for, at
// most: see SyncQueueLen.
const loadBatch = 512

// SyncQueueLen is the sync-subscription queue length (nats.SyncQueueLen)
// a connection used by a Store should have. Each Load request is a batched
// direct get, which reads its answers through a fresh sync subscription
// whose channel has the connection's queue length; nats.go's default,
// 65,536, makes every load allocate and clear a 512 KiB channel (measured:
// about 55µs and much of the garbage of a load that finds nothing new).
// A Store sizes its batches to fit the connection's queue, so any length is
// safe; this one lets a batch be loadBatch messages.
const SyncQueueLen = 2 * loadBatch

// JetStream error codes the store interprets.
const (
	errCodeWrongLastSeq         jetstream.ErrorCode = 10071
	errCodeWrongLastSeqConstant jetstream.ErrorCode = 10164
	errCodeBatchDuplicate       jetstream.ErrorCode = 10201
	errCodeBatchTooManyInflight jetstream.ErrorCode = 10210
)

// busyRetries bounds how often an atomic batch is retried when the stream
// has too many batches open at once (the server allows 50 per stream).
const busyRetries = 12

// eventIDSpace namespaces the deterministic event ids derived from
// idempotency keys, so a retried command produces the same event ids.
var eventIDSpace = uuid.MustParse("6f1c0a52-7d0e-4b38-9a51-3c2f6a9e1d47")

// Expectation is an append's optimistic-concurrency condition on the
// aggregate's subjects.
type Expectation struct {
	check bool
	seq   uint64
}

// ExpectAny appends whatever the aggregate holds.
var ExpectAny = Expectation{}

// ExpectNew appends only if the aggregate has no events yet.
func ExpectNew() Expectation { return Expectation{check: true} }

// ExpectVersion appends only if the aggregate's last event is at seq
// (0 meaning it has none).
func ExpectVersion(seq uint64) Expectation { return Expectation{check: true, seq: seq} }

func (e Expectation) String() string {
	if !e.check {
		return "any"
	}
	return strconv.FormatUint(e.seq, 10)
}

// AppendRequest appends one or more events of one aggregate atomically.
type AppendRequest struct {
	Stream string
	// Aggregate is the subject filter covering all the aggregate's events,
	// e.g. "ledger.farmer.F1.>". Expectations are checked against it.
	Aggregate string
	Expect    Expectation
	// IdempotencyKey identifies the command (e.g. its client request id).
	// A second append with the same key returns the first one's result.
	IdempotencyKey string
	// Fingerprint summarises the command's content; a second append with the
	// same key and another fingerprint fails with ErrIdempotencyMismatch.
	Fingerprint string
	Events      []Event
}

// AppendResult says where the events were written.
type AppendResult struct {
	Stream string
	First  uint64
	Last   uint64
	// Duplicate is true when the events had been appended before, by an
	// earlier attempt with the same idempotency key.
	Duplicate bool
	// EventIDs are the ids of the appended (or previously appended) events.
	EventIDs []string
}

// Position is the position of the last event written.
func (r AppendResult) Position() Position { return Position{Stream: r.Stream, Sequence: r.Last} }

// Store appends to and reads from JetStream streams. It is safe for
// concurrent use.
type Store struct {
	js   jetstream.JetStream
	now  func() time.Time
	opts Options
	// batch is how many messages a direct-get request asks for: all of a
	// batch's answers must fit the connection's sync queue, or the client
	// drops them as a slow consumer.
	batch int
	// streams caches stream handles by name: looking one up costs a
	// STREAM.INFO round trip, and the handle itself stays valid.
	streams sync.Map
	// committers holds each stream's *committer (group commit).
	committers sync.Map
	stats      counters
}

// New returns a Store over js with group commit on (see Options).
func New(js jetstream.JetStream) *Store { return NewWithOptions(js, Options{}) }

// NewWithOptions returns a Store over js tuned by opts.
func NewWithOptions(js jetstream.JetStream, opts Options) *Store {
	batch := loadBatch
	if nc := js.Conn(); nc != nil {
		// Room for the batch and the end-of-batch status.
		batch = max(1, min(batch, nc.Opts.SubChanLen-1))
	}
	if opts.MinBatch <= 0 {
		opts.MinBatch = DefaultMinBatch
	}
	return &Store{js: js, now: time.Now, opts: opts, batch: batch}
}

// JetStream returns the underlying JetStream context.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Append writes req.Events atomically, or returns the result of an earlier
// append with the same idempotency key. A failed expectation is ErrConflict.
//
// With group commit (the default) the append joins whatever other appends
// to the same stream are waiting, and they go out together as one atomic
// batch, each with its own expectation; Append returns once that batch is
// stored. See Options.
func (s *Store) Append(ctx context.Context, req AppendRequest) (res AppendResult, err error) {
	start := time.Now()
	ctx, span := startSend(ctx, req.Stream, len(req.Events))
	defer func() { recordAppend(ctx, req, res, err, time.Since(start)); endSend(span, res, err) }()
	s.stats.appends.Add(1)
	p, err := s.prepare(ctx, req)
	if err != nil {
		return AppendResult{}, err
	}
	if s.opts.NoGroupCommit {
		s.publishAlone(ctx, p)
	} else if err := s.committer(req.Stream).submit(ctx, p); err != nil {
		return AppendResult{}, err
	}
	return s.settle(ctx, p)
}

// AppendOutcome is the result of one request of AppendMany.
type AppendOutcome struct {
	Result AppendResult
	Err    error
}

// AppendMany appends each request as Append would and returns their
// outcomes in order: each request succeeds or fails on its own (its own
// expectation, idempotency key and errors). They are submitted together,
// so they share atomic batches, up to MaxBatch messages each.
//
// Requests on the same aggregate where either carries an expectation never
// share a batch: they are written one after the other in the order given.
// (Requests without one, ExpectAny, may share a batch and then land in any
// order among themselves, as concurrent appends always could.) Each
// request's expectation is fixed when it is made, so two requests
// expecting the same version of one aggregate cannot both succeed; a caller
// that appends several times to one aggregate decides the later ones after
// the earlier ones' results.
func (s *Store) AppendMany(ctx context.Context, reqs []AppendRequest) []AppendOutcome {
	out := make([]AppendOutcome, len(reqs))
	start := time.Now()
	ctx, span := startSendMany(ctx, reqs)
	defer func() {
		took := time.Since(start)
		for i, o := range out {
			recordAppend(ctx, reqs[i], o.Result, o.Err, took)
		}
		endSendMany(span, out)
	}()
	s.stats.appends.Add(uint64(len(reqs)))
	ps := make([]*pending, 0, len(reqs))
	at := make([]int, 0, len(reqs)) // ps[k] is reqs[at[k]]
	for i, req := range reqs {
		p, err := s.prepare(ctx, req)
		if err != nil {
			out[i].Err = err
			continue
		}
		ps, at = append(ps, p), append(at, i)
	}
	if s.opts.NoGroupCommit {
		for _, p := range ps {
			s.publishAlone(ctx, p)
		}
	} else {
		// One submission per stream, so each stream's requests queue together.
		byStream := map[string][]*pending{}
		var streams []string
		for _, p := range ps {
			if _, ok := byStream[p.req.Stream]; !ok {
				streams = append(streams, p.req.Stream)
			}
			byStream[p.req.Stream] = append(byStream[p.req.Stream], p)
		}
		for _, name := range streams {
			if err := s.committer(name).submit(ctx, byStream[name]...); err != nil {
				for k, p := range ps {
					if p.req.Stream == name {
						out[at[k]].Err = err
					}
				}
			}
		}
	}
	for k, p := range ps {
		if out[at[k]].Err != nil {
			continue
		}
		out[at[k]].Result, out[at[k]].Err = s.settle(ctx, p)
	}
	return out
}

// settle turns a published request's raw outcome into Append's answer: a
// failed publish may be an earlier attempt's retry, and a duplicate ack
// must belong to the same command.
func (s *Store) settle(ctx context.Context, p *pending) (AppendResult, error) {
	if p.err != nil {
		return s.resolve(ctx, p.req, p.err)
	}
	res := p.res
	res.EventIDs = p.ids
	if res.Duplicate {
		return s.checkDuplicate(ctx, p.req, res)
	}
	return res, nil
}

// publishAlone publishes one request on its own (no group commit).
func (s *Store) publishAlone(ctx context.Context, p *pending) {
	s.stats.publishes.Add(1)
	if len(p.msgs) == 1 {
		p.res, p.err = s.publishOne(ctx, p.msgs[0])
	} else {
		p.res, p.err = s.publishBatch(ctx, p.msgs)
	}
}

// prepare validates req and makes its messages.
func (s *Store) prepare(ctx context.Context, req AppendRequest) (*pending, error) {
	msgs, ids, err := s.messages(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pending{ctx: ctx, req: req, msgs: msgs, ids: ids, scope: scopeOf(req), check: req.Expect.check}, nil
}

func (s *Store) messages(ctx context.Context, req AppendRequest) ([]*nats.Msg, []string, error) {
	if req.Stream == "" || req.Aggregate == "" {
		return nil, nil, fmt.Errorf("%w: stream and aggregate are required", ErrInvalidAppend)
	}
	if n := len(req.Events); n == 0 || n > MaxBatch {
		return nil, nil, fmt.Errorf("%w: %d events (want 1..%d)", ErrInvalidAppend, n, MaxBatch)
	}
	msgs := make([]*nats.Msg, len(req.Events))
	ids := make([]string, len(req.Events))
	for i, e := range req.Events {
		if e.Subject == "" || e.Type == "" {
			return nil, nil, fmt.Errorf("%w: event %d needs a subject and a type", ErrInvalidAppend, i)
		}
		msgID := s.msgID(req, i)
		if e.ID == "" {
			e.ID = uuid.NewSHA1(eventIDSpace, []byte(msgID)).String()
		}
		if e.OccurredAt.IsZero() {
			e.OccurredAt = s.now()
		}
		if e.SchemaVersion == 0 {
			e.SchemaVersion = 1
		}
		m := nats.NewMsg(e.Subject)
		m.Header = e.header(req.IdempotencyKey, req.Fingerprint)
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		telemetry.Inject(ctx, m.Header)
		m.Data = e.Data
		msgs[i] = m
		ids[i] = e.ID
	}
	// The expectation travels on the request's first message, whether it
	// goes out alone, as its own batch or inside a group's batch: the server
	// checks it against the stream before any message of the batch is stored.
	first := msgs[0]
	first.Header.Set(jetstream.ExpectedStreamHeader, req.Stream)
	if req.Expect.check {
		first.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(req.Expect.seq, 10))
		first.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, req.Aggregate)
	}
	return msgs, ids, nil
}

// msgID is the Nats-Msg-Id of event i: the idempotency key (with the
// event's index when there are several), or a fresh id without a key.
func (s *Store) msgID(req AppendRequest, i int) string {
	switch {
	case req.IdempotencyKey == "":
		if req.Events[i].ID != "" {
			return req.Events[i].ID
		}
		return uuid.NewString()
	case len(req.Events) == 1:
		return req.IdempotencyKey
	default:
		return req.IdempotencyKey + "#" + strconv.Itoa(i)
	}
}

// publishOne publishes a message whose headers already carry its
// expectation (see messages).
func (s *Store) publishOne(ctx context.Context, m *nats.Msg) (AppendResult, error) {
	clearBatchHeaders(m)
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return AppendResult{}, err
	}
	return AppendResult{Stream: ack.Stream, First: ack.Sequence, Last: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publishBatch publishes msgs as one atomic batch, waiting its turn while
// the stream has too many batches open.
func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg) (AppendResult, error) {
	for _, m := range msgs {
		m.Reply = "" // a request from an earlier attempt
	}
	// Back off with full jitter (1ms, doubling, at most 64ms, each wait
	// random up to twice that): the open batches commit within
	// milliseconds, and the appends waiting for them should not all come
	// back at once.
	busy := &backoff.ExponentialBackOff{InitialInterval: time.Millisecond, RandomizationFactor: 1, Multiplier: 2, MaxInterval: 64 * time.Millisecond}
	ack, err := backoff.Retry(ctx, func() (*jetstreamext.BatchAck, error) {
		ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs)
		if err != nil && !isAPIError(err, errCodeBatchTooManyInflight) {
			return nil, backoff.Permanent(err)
		}
		return ack, err
	}, backoff.WithBackOff(busy), backoff.WithMaxTries(busyRetries+1), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(error, time.Duration) { s.stats.busy.Add(1) }))
	if err != nil {
		return AppendResult{}, err
	}
	return AppendResult{
		Stream: ack.Stream,
		First:  ack.Sequence - ack.BatchSize + 1,
		Last:   ack.Sequence,
	}, nil
}

// clearBatchHeaders removes what an earlier batch attempt left on m, so it
// can be published on its own.
func clearBatchHeaders(m *nats.Msg) {
	m.Reply = ""
	if m.Header == nil {
		return
	}
	m.Header.Del(jetstreamext.BatchIDHeader)
	m.Header.Del(jetstreamext.BatchSeqHeader)
	m.Header.Del(jetstreamext.BatchCommitHeader)
}

func isAPIError(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// resolve interprets a failed publish. A wrong-last-sequence answer may be
// a retry of an append that already landed (a single server checks the
// expectation before de-duplicating), so it looks for the key first.
func (s *Store) resolve(ctx context.Context, req AppendRequest, pubErr error) (AppendResult, error) {
	var apiErr *jetstream.APIError
	if !errors.As(pubErr, &apiErr) {
		return AppendResult{}, fmt.Errorf("append to %s: %w", req.Aggregate, pubErr)
	}
	switch apiErr.ErrorCode {
	case errCodeWrongLastSeq, errCodeWrongLastSeqConstant, errCodeBatchDuplicate:
	default:
		return AppendResult{}, fmt.Errorf("append to %s: %w", req.Aggregate, pubErr)
	}
	if req.IdempotencyKey != "" {
		// Loads are direct gets, which any replica of a replicated stream
		// may answer; one that lags the leader may not hold our earlier
		// append yet, so look again briefly before calling it a conflict.
		for _, wait := range s.replicaLagWaits(ctx, req.Stream) {
			if !sleepCtx(ctx, wait) {
				return AppendResult{}, ctx.Err()
			}
			prior, found, err := s.findByKey(ctx, req)
			if err != nil {
				return AppendResult{}, err
			}
			if found {
				return prior, nil
			}
		}
	}
	return AppendResult{}, fmt.Errorf("append to %s expecting version %s: %w", req.Aggregate, req.Expect, ErrConflict)
}

// findByKey looks in the aggregate for events written under req's key.
func (s *Store) findByKey(ctx context.Context, req AppendRequest) (AppendResult, bool, error) {
	after := uint64(0)
	if req.Expect.check {
		after = req.Expect.seq
	}
	evs, err := s.Load(ctx, req.Stream, req.Aggregate, after)
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("look up idempotency key %q: %w", req.IdempotencyKey, err)
	}
	res := AppendResult{Stream: req.Stream, Duplicate: true}
	for _, ev := range evs {
		if ev.IdempotencyKey != req.IdempotencyKey {
			continue
		}
		if ev.Fingerprint != req.Fingerprint {
			return AppendResult{}, false, fmt.Errorf("%w: key %q", ErrIdempotencyMismatch, req.IdempotencyKey)
		}
		if res.First == 0 {
			res.First = ev.Sequence
		}
		res.Last = ev.Sequence
		res.EventIDs = append(res.EventIDs, ev.ID)
	}
	return res, res.First != 0, nil
}

// checkDuplicate verifies that a duplicate ack belongs to the same command.
func (s *Store) checkDuplicate(ctx context.Context, req AppendRequest, res AppendResult) (AppendResult, error) {
	stream, err := s.stream(ctx, req.Stream)
	if err != nil {
		return AppendResult{}, fmt.Errorf("check duplicate in %s: %w", req.Stream, err)
	}
	var raw *jetstream.RawStreamMsg
	for _, wait := range s.replicaLagWaits(ctx, req.Stream) {
		if !sleepCtx(ctx, wait) {
			return AppendResult{}, ctx.Err()
		}
		if raw, err = stream.GetMsg(ctx, res.Last); !errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
	}
	if err != nil {
		return AppendResult{}, fmt.Errorf("check duplicate %s:%d: %w", req.Stream, res.Last, err)
	}
	if raw.Header.Get(HeaderFingerprint) != req.Fingerprint {
		return AppendResult{}, fmt.Errorf("%w: key %q", ErrIdempotencyMismatch, req.IdempotencyKey)
	}
	res.EventIDs = []string{raw.Header.Get(HeaderEventID)}
	return res, nil
}

// replicaLagWaits returns the pauses before each attempt of a read that must
// see an append the leader already acknowledged: one immediate attempt on a
// single replica, a few spaced ones on a replicated stream.
func (s *Store) replicaLagWaits(ctx context.Context, name string) []time.Duration {
	st, err := s.stream(ctx, name)
	if err == nil && st.CachedInfo().Config.Replicas > 1 {
		return []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond}
	}
	return []time.Duration{0}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stream returns the handle of the named stream.
func (s *Store) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if st, ok := s.streams.Load(name); ok {
		return st.(jetstream.Stream), nil
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	s.streams.Store(name, st)
	return st, nil
}

// Version returns the sequence of the last event on the subjects matching
// filter, or 0 when there is none.
func (s *Store) Version(ctx context.Context, stream, filter string) (uint64, error) {
	st, err := s.stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("version of %s: %w", filter, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("version of %s: %w", filter, err)
	}
	return raw.Sequence, nil
}

// Load returns the events on subjects matching filter with a sequence
// greater than after, in stream order.
func (s *Store) Load(ctx context.Context, stream, filter string, after uint64) ([]Recorded, error) {
	var out []Recorded
	next := after + 1
	for {
		it, err := jetstreamext.GetBatch(ctx, s.js, stream, s.batch,
			jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(filter))
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", filter, err)
		}
		pending := uint64(0)
		got := 0
		for raw, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", filter, err)
			}
			rec, err := FromMsg(stream, raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
			got++
			next = raw.Sequence + 1
			pending, _ = strconv.ParseUint(raw.Header.Get("Nats-Num-Pending"), 10, 64)
		}
		if got == 0 || pending == 0 {
			return out, nil
		}
	}
}

// lastsPerRequest is how many filters one Lasts request names: few enough
// that their answers fit a batch (see SyncQueueLen) when each matches a
// few subjects.
const lastsPerRequest = 128

// Lasts returns the last event on each subject matching one of filters,
// in a few batched direct gets rather than a request per filter: what a
// bulk command needs to tell which of many aggregates exist at all. It
// fails with ErrTooManySubjects when one request's filters match more
// subjects than an answer carries; the caller then loads them one by one.
func (s *Store) Lasts(ctx context.Context, stream string, filters []string) ([]Recorded, error) {
	var out []Recorded
	for chunk := range slices.Chunk(filters, max(1, min(lastsPerRequest, s.batch/4))) {
		it, err := jetstreamext.GetLastMsgsFor(ctx, s.js, stream, chunk, jetstreamext.GetLastMsgsBatchSize(s.batch))
		if err != nil {
			return nil, fmt.Errorf("last events of %d filters: %w", len(chunk), err)
		}
		got := 0
		for raw, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("last events of %d filters: %w", len(chunk), err)
			}
			rec, err := FromMsg(stream, raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
			got++
		}
		if got >= s.batch {
			return nil, fmt.Errorf("last events of %d filters: %w", len(chunk), ErrTooManySubjects)
		}
	}
	return out, nil
}
