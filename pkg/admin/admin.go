// Package admin implements furrow.admin.v1.AdminService, the operators' API:
// event streams (list, describe, read, tail), projections (status, lag,
// rebuild into a shadow copy, diff, swap, drop, pause, resume) and dead
// letters (list, inspect, redrive).
//
// It runs inside the process that runs the projections and the event
// handlers, because rebuilds, pauses and redrives act on those running
// runners and handlers; the services register them with AddProjections and
// SetHandlers. Streams and events are read from JetStream by the server, so
// an operator needs only the gRPC address, and events come back decoded
// (the server links every event type).
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/limits"
	"github.com/furrow/furrow/pkg/projection"
)

// Server implements AdminService.
//
// Concurrency: mu guards the registries; they are filled while the process
// wires itself and read by every call. The runners and JetStream handle are
// safe for concurrent use.
type Server struct {
	adminv1.UnimplementedAdminServiceServer

	js  jetstream.JetStream
	log *slog.Logger

	mu          sync.Mutex
	projections map[string]registered
	handlers    map[string]message.HandlerFunc
}

type registered struct {
	service string
	runner  *projection.Runner
}

var _ adminv1.AdminServiceServer = (*Server)(nil)

// New returns a Server over js with no projections or handlers yet.
func New(js jetstream.JetStream, log *slog.Logger) (*Server, error) {
	if js == nil {
		return nil, errors.New("admin: a JetStream handle is required")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{js: js, log: log, projections: map[string]registered{}, handlers: map[string]message.HandlerFunc{}}, nil
}

// AddProjections registers a service's projection runners. Names must be
// unique across services.
func (s *Server) AddProjections(service string, runners ...*projection.Runner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range runners {
		if prev, ok := s.projections[r.Name()]; ok {
			return fmt.Errorf("admin: projection %s registered by %s and %s", r.Name(), prev.service, service)
		}
		s.projections[r.Name()] = registered{service: service, runner: r}
	}
	return nil
}

// SetHandlers registers the event handlers dead letters can be redriven
// to, by the name they were parked under (the router's handler name):
// pass router.Handlers(). The handlers are called without the router's
// middleware, once per redrive, and must not produce messages.
func (s *Server) SetHandlers(handlers map[string]message.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, h := range handlers {
		s.handlers[name] = h
	}
}

func (s *Server) runner(name string) (registered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reg, ok := s.projections[name]
	if !ok {
		names := make([]string, 0, len(s.projections))
		for n := range s.projections {
			names = append(names, n)
		}
		sort.Strings(names)
		return registered{}, failure.NotFound("name", "no projection %q (have: %s)", name, strings.Join(names, ", "))
	}
	return reg, nil
}

func (s *Server) registeredAll() []registered {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]registered, 0, len(s.projections))
	for _, reg := range s.projections {
		out = append(out, reg)
	}
	slices.SortFunc(out, func(a, b registered) int { return strings.Compare(a.runner.Name(), b.runner.Name()) })
	return out
}

// ListProjections implements AdminService.
func (s *Server) ListProjections(ctx context.Context, _ *adminv1.ListProjectionsRequest) (*adminv1.ListProjectionsResponse, error) {
	res := &adminv1.ListProjectionsResponse{}
	for _, reg := range s.registeredAll() {
		p, err := s.status(ctx, reg)
		if err != nil {
			return nil, err
		}
		res.Projections = append(res.Projections, p)
	}
	return res, nil
}

func (s *Server) status(ctx context.Context, reg registered) (*adminv1.Projection, error) {
	st, err := reg.runner.Status(ctx)
	if err != nil {
		// A projection whose stream is missing is reported, not hidden.
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return &adminv1.Projection{Name: reg.runner.Name(), Stream: reg.runner.Stream(), Service: reg.service,
				State: adminv1.ProjectionState_PROJECTION_STATE_STALLED, Reason: "stream " + reg.runner.Stream() + " does not exist"}, nil
		}
		return nil, fmt.Errorf("status of %s: %w", reg.runner.Name(), err)
	}
	return projectionProto(reg.service, st), nil
}

// GetProjection implements AdminService.
func (s *Server) GetProjection(ctx context.Context, req *adminv1.GetProjectionRequest) (*adminv1.GetProjectionResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	p, err := s.status(ctx, reg)
	if err != nil {
		return nil, err
	}
	return &adminv1.GetProjectionResponse{Projection: p}, nil
}

// RebuildProjection implements AdminService.
func (s *Server) RebuildProjection(ctx context.Context, req *adminv1.RebuildProjectionRequest) (*adminv1.RebuildProjectionResponse, error) {
	from, err := limits.Time("from_time", req.GetFromTime())
	if err != nil {
		return nil, err
	}
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	opts := projection.RebuildOptions{FromSeq: req.GetFromSequence(), FromTime: from}
	v, err := reg.runner.Rebuild(ctx, opts)
	if err != nil {
		return nil, classify(err)
	}
	s.log.InfoContext(ctx, "admin: rebuild started", "projection", reg.runner.Name(), "copy", v)
	p, err := s.status(ctx, reg)
	if err != nil {
		return nil, err
	}
	return &adminv1.RebuildProjectionResponse{Version: v, Projection: p}, nil
}

// DiffProjection implements AdminService.
func (s *Server) DiffProjection(ctx context.Context, req *adminv1.DiffProjectionRequest) (*adminv1.DiffProjectionResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	d, err := reg.runner.Diff(ctx, projection.DiffOptions{Version: req.GetVersion(), Samples: int(req.GetSamples())})
	if err != nil {
		return nil, classify(err)
	}
	return diffProto(d), nil
}

// SwapProjection implements AdminService.
func (s *Server) SwapProjection(ctx context.Context, req *adminv1.SwapProjectionRequest) (*adminv1.SwapProjectionResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	res, err := reg.runner.Swap(ctx)
	if err != nil {
		return nil, classify(err)
	}
	s.log.InfoContext(ctx, "admin: projection swapped", "projection", reg.runner.Name(), "live", res.Live, "retired", res.Retired)
	return &adminv1.SwapProjectionResponse{LiveVersion: res.Live, RetiredVersion: res.Retired, Position: res.Position}, nil
}

// DropProjectionCopy implements AdminService.
func (s *Server) DropProjectionCopy(ctx context.Context, req *adminv1.DropProjectionCopyRequest) (*adminv1.DropProjectionCopyResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetVersion() <= 0 {
		return nil, failure.Invalid("version", "name the copy to drop")
	}
	if err := reg.runner.DropCopy(ctx, req.GetVersion()); err != nil {
		return nil, classify(err)
	}
	s.log.InfoContext(ctx, "admin: projection copy dropped", "projection", reg.runner.Name(), "copy", req.GetVersion())
	return &adminv1.DropProjectionCopyResponse{}, nil
}

// PauseProjection implements AdminService.
func (s *Server) PauseProjection(ctx context.Context, req *adminv1.PauseProjectionRequest) (*adminv1.PauseProjectionResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := reg.runner.Pause(ctx, req.GetReason()); err != nil {
		return nil, classify(err)
	}
	p, err := s.status(ctx, reg)
	if err != nil {
		return nil, err
	}
	return &adminv1.PauseProjectionResponse{Projection: p}, nil
}

// ResumeProjection implements AdminService.
func (s *Server) ResumeProjection(ctx context.Context, req *adminv1.ResumeProjectionRequest) (*adminv1.ResumeProjectionResponse, error) {
	reg, err := s.runner(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := reg.runner.Resume(ctx); err != nil {
		return nil, classify(err)
	}
	p, err := s.status(ctx, reg)
	if err != nil {
		return nil, err
	}
	return &adminv1.ResumeProjectionResponse{Projection: p}, nil
}

// classify maps the projection package's errors to failure kinds (and so
// to status codes); anything else stays unclassified (Internal).
func classify(err error) error {
	kind := failure.Kind(0)
	switch {
	case errors.Is(err, projection.ErrNoCopy):
		kind = failure.KindNotFound
	case errors.Is(err, projection.ErrInvalidConfig):
		kind = failure.KindInvalid
	case errors.Is(err, projection.ErrStillFailing):
		kind = failure.KindConflict
	case errors.Is(err, projection.ErrNotVersioned), errors.Is(err, projection.ErrNoShadow),
		errors.Is(err, projection.ErrShadowExists), errors.Is(err, projection.ErrNotCaughtUp),
		errors.Is(err, projection.ErrLiveCopy), errors.Is(err, projection.ErrNotRunning),
		errors.Is(err, projection.ErrNotParked), errors.Is(err, projection.ErrPaused),
		errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "align copies"):
		kind = failure.KindFailedPrecondition
	default:
		return err
	}
	return &failure.Error{Kind: kind, Msg: err.Error()}
}

// ListDeadLetters implements AdminService.
func (s *Server) ListDeadLetters(ctx context.Context, req *adminv1.ListDeadLettersRequest) (*adminv1.ListDeadLettersResponse, error) {
	letters, err := deadletter.List(ctx, s.js, req.GetConsumer())
	if err != nil {
		return nil, err
	}
	res := &adminv1.ListDeadLettersResponse{}
	for _, l := range letters {
		if l.Parked() || req.GetAll() {
			res.DeadLetters = append(res.DeadLetters, deadLetterProto(l, false))
		}
	}
	return res, nil
}

// GetDeadLetter implements AdminService.
func (s *Server) GetDeadLetter(ctx context.Context, req *adminv1.GetDeadLetterRequest) (*adminv1.GetDeadLetterResponse, error) {
	l, err := deadletter.Get(ctx, s.js, req.GetSequence())
	if errors.Is(err, deadletter.ErrNotFound) {
		return nil, failure.NotFound("sequence", "%v", err)
	}
	if err != nil {
		return nil, err
	}
	return &adminv1.GetDeadLetterResponse{DeadLetter: deadLetterProto(l, true)}, nil
}

// RedriveDeadLetter implements AdminService.
func (s *Server) RedriveDeadLetter(ctx context.Context, req *adminv1.RedriveDeadLetterRequest) (*adminv1.RedriveDeadLetterResponse, error) {
	l, err := deadletter.Get(ctx, s.js, req.GetSequence())
	if errors.Is(err, deadletter.ErrNotFound) {
		return nil, failure.NotFound("sequence", "%v", err)
	}
	if err != nil {
		return nil, err
	}
	if !l.Parked() {
		return nil, failure.FailedPrecondition("dead letter %d is already resolved (%s at %s)",
			l.Seq, l.Resolution.Outcome, l.Resolution.At.UTC().Format("2006-01-02T15:04:05Z"))
	}
	var outcome string
	switch l.Kind {
	case deadletter.KindProjection:
		reg, err := s.runner(l.Consumer)
		if err != nil {
			return nil, err
		}
		res, err := reg.runner.Redrive(ctx, l.Copy, l.SourceSeq)
		if err != nil {
			return nil, classify(err)
		}
		outcome = res.Outcome
	default:
		if err := s.redriveHandler(ctx, l); err != nil {
			return nil, err
		}
		outcome = "redriven"
	}
	if err := deadletter.Resolve(ctx, s.js, l.Seq, outcome, "redriven by an operator"); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "admin: dead letter redriven", "dead_letter", l.Seq, "consumer", l.Consumer,
		"stream", l.SourceStream, "seq", l.SourceSeq, "outcome", outcome)
	l, err = deadletter.Get(ctx, s.js, l.Seq)
	if err != nil {
		return nil, err
	}
	return &adminv1.RedriveDeadLetterResponse{Outcome: outcome, DeadLetter: deadLetterProto(l, true)}, nil
}

// redriveHandler calls the handler the letter was parked by with the
// original event, once. Handlers are idempotent by the source event id, so
// a redrive of an event that was meanwhile handled is harmless.
func (s *Server) redriveHandler(ctx context.Context, l deadletter.Letter) (err error) {
	s.mu.Lock()
	h, ok := s.handlers[l.Consumer]
	s.mu.Unlock()
	if !ok {
		return failure.FailedPrecondition("no handler %q runs in this process to redrive dead letter %d to", l.Consumer, l.Seq)
	}
	msg, err := handlerMessage(ctx, l)
	if err != nil {
		return failure.FailedPrecondition("dead letter %d cannot be redriven: %v", l.Seq, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = &failure.Error{Kind: failure.KindConflict, Msg: "the handler panicked; the event stays parked", Err: fmt.Errorf("%v", r)}
		}
	}()
	produced, err := h(msg)
	if err != nil {
		return &failure.Error{Kind: failure.KindConflict, Msg: "handler " + l.Consumer + " failed again; the event stays parked", Err: err}
	}
	if len(produced) > 0 {
		return failure.FailedPrecondition("handler %s produced %d messages on redrive; redrive supports consumer handlers only", l.Consumer, len(produced))
	}
	return nil
}
