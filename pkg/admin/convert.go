package admin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/projection"
)

var states = map[projection.State]adminv1.ProjectionState{
	projection.StateIdle:       adminv1.ProjectionState_PROJECTION_STATE_IDLE,
	projection.StateCatchingUp: adminv1.ProjectionState_PROJECTION_STATE_CATCHING_UP,
	projection.StateFailing:    adminv1.ProjectionState_PROJECTION_STATE_FAILING,
	projection.StateBlocked:    adminv1.ProjectionState_PROJECTION_STATE_BLOCKED,
	projection.StateStalled:    adminv1.ProjectionState_PROJECTION_STATE_STALLED,
	projection.StatePaused:     adminv1.ProjectionState_PROJECTION_STATE_PAUSED,
	projection.StateStopped:    adminv1.ProjectionState_PROJECTION_STATE_STOPPED,
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func projectionProto(service string, st projection.Status) *adminv1.Projection {
	p := &adminv1.Projection{
		Name: st.Name, Stream: st.Stream, Service: service, Version: st.Version,
		Checkpoint: st.Checkpoint, StreamHead: st.StreamHead, LagEvents: st.LagEvents, LagTime: dur(st.LagTime),
		LastAppliedAt: ts(st.LastAppliedAt), HeartbeatAt: ts(st.HeartbeatAt),
		State: states[st.State], Reason: st.Reason, Healthy: st.State.Healthy(),
		FailurePolicy: st.Policy.String(), Paused: st.Paused, PauseReason: st.PauseReason, Versioned: st.Versioned,
		FailingSequence: st.FailingSeq, Attempts: int32(st.Attempts), LastError: st.LastError,
		DeadLetter: st.DeadLetter, Skipped: int32(st.Skipped),
	}
	for _, c := range st.Copies {
		p.Copies = append(p.Copies, &adminv1.ProjectionCopy{
			Version: c.Version, Role: c.Role, Checkpoint: c.Checkpoint, Applied: c.Applied, FromSequence: c.FromSeq,
			CreatedAt: ts(c.CreatedAt), LastAppliedAt: ts(c.UpdatedAt), State: states[c.State], Reason: c.Reason,
			HeartbeatAt: ts(c.HeartbeatAt), LagEvents: c.LagEvents, LagTime: dur(c.LagTime),
			Rate: c.Rate, Eta: dur(c.ETA), CaughtUp: c.CaughtUp, Total: c.Total,
		})
	}
	return p
}

func diffProto(d projection.Diff) *adminv1.DiffProjectionResponse {
	res := &adminv1.DiffProjectionResponse{
		Projection: d.Projection, LiveVersion: d.Live, OtherVersion: d.Other,
		LiveCheckpoint: d.LiveCheckpoint, OtherCheckpoint: d.OtherCheckpoint,
		Aligned: d.Aligned, Position: d.Position, Empty: d.Empty(), Summary: d.Summary(),
	}
	for _, t := range d.Tables {
		td := &adminv1.TableDiff{
			Table: t.Table, Key: t.Key, LiveRows: int64(t.LiveRows), OtherRows: int64(t.OtherRows),
			Added: int64(t.Added), Removed: int64(t.Removed), Changed: int64(t.Changed),
			ColumnsAdded: t.ColumnsAdded, ColumnsRemoved: t.ColumnsRemoved,
		}
		for _, s := range t.Samples {
			td.Samples = append(td.Samples, &adminv1.RowDiff{Kind: s.Kind, Key: s.Key, Columns: s.Columns, Live: s.Live, Other: s.Other})
		}
		res.Tables = append(res.Tables, td)
	}
	return res
}

func deadLetterProto(l deadletter.Letter, withEvent bool) *adminv1.DeadLetter {
	dl := &adminv1.DeadLetter{
		Sequence: l.Seq, ParkedAt: ts(l.ParkedAt), Kind: l.Kind, Consumer: l.Consumer, Copy: l.Copy, Policy: l.Policy,
		SourceStream: l.SourceStream, SourceSequence: l.SourceSeq, SourceSubject: l.SourceSubject,
		Reason: l.Reason, Attempts: int32(l.Attempts), Status: "parked",
	}
	if l.Resolution != nil {
		dl.Status, dl.ResolvedAt = l.Resolution.Outcome, ts(l.Resolution.At)
	}
	if withEvent {
		at := l.SourceTime
		if at.IsZero() {
			at = l.ParkedAt
		}
		dl.Event = eventProto(l.SourceStream, l.SourceSeq, l.SourceSubject, at, l.Header, l.Data)
	}
	return dl
}
