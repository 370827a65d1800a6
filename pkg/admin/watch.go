package admin

import (
	"time"

	"google.golang.org/grpc"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"

	"github.com/furrow/furrow/pkg/failure"
)

// WatchProjection's pacing (admin.proto): messages come no closer than the
// request's interval (default, bounds) and no further apart than
// watchHeartbeat (or the interval, if longer). Lag and rate move as the
// stream grows and time passes, which the runner does not signal, so the
// heartbeat is also what keeps an idle watch's figures current.
const (
	watchDefaultInterval = time.Second
	watchMinInterval     = 50 * time.Millisecond
	watchMaxInterval     = time.Minute
	watchHeartbeat       = 5 * time.Second
)

// WatchProjection implements AdminService.
//
// It reads the status when the runner reports a change (Runner.Changed)
// or the heartbeat is due, never more often than the interval: a rebuild
// moving its checkpoint a few times a second costs a few status reads a
// second, however many events each batch holds, and an idle projection
// one every heartbeat.
func (s *Server) WatchProjection(req *adminv1.WatchProjectionRequest, stream grpc.ServerStreamingServer[adminv1.WatchProjectionResponse]) error {
	ctx := stream.Context()
	interval := watchDefaultInterval
	if req.GetInterval() != nil {
		if err := req.GetInterval().CheckValid(); err != nil {
			return failure.Invalid("interval", "%v", err)
		}
		interval = req.GetInterval().AsDuration()
		if interval < watchMinInterval || interval > watchMaxInterval {
			return failure.Invalid("interval", "%s: want from %s to %s", interval, watchMinInterval, watchMaxInterval)
		}
	}
	reg, err := s.runner(req.GetName())
	if err != nil {
		return err
	}
	heartbeat := max(watchHeartbeat, interval)
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		// Taken before the status is read: a change while it is read
		// wakes the next round.
		changed := reg.runner.Changed()
		p, err := s.status(ctx, reg)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the client went away
			}
			return err
		}
		if err := stream.Send(&adminv1.WatchProjectionResponse{Projection: p}); err != nil {
			return nil // the client went away
		}
		if req.GetUntilCaughtUp() && !rebuilding(p) {
			return nil
		}
		sent := time.Now()
		tick.Reset(heartbeat)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			continue
		case <-changed:
		}
		// A change: report it, but not sooner than interval after the
		// last message (later changes ride along).
		tick.Reset(max(interval-time.Since(sent), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// rebuilding reports whether p has a shadow copy still catching up.
func rebuilding(p *adminv1.Projection) bool {
	for _, c := range p.GetCopies() {
		if c.GetRole() == "shadow" && !c.GetCaughtUp() {
			return true
		}
	}
	return false
}
