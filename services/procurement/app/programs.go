package app

import (
	"context"
	"errors"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/procurement/domain"
)

// OpenProgram is the command to open a direct-purchase programme.
type OpenProgram struct {
	RequestID   string
	Fingerprint string
	ProgramID   string
	Terms       domain.ProgramTerms
	Meta        eventstore.Metadata
}

// OpenProgram opens a programme, once per request id.
func (p *Procurement) OpenProgram(ctx context.Context, cmd OpenProgram) (_ eventstore.AppendResult, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("program_id", cmd.ProgramID); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "procurement.OpenProgram:" + cmd.RequestID
	prog, seen, err := p.events.LoadProgram(ctx, cmd.ProgramID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		return res, err
	}
	ev, err := prog.Open(cmd.Terms)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := p.events.Append(ctx, prog, key, cmd.Fingerprint, cmd.Meta,
		domain.Change{Subject: domain.ProgramSubject(prog.ID(), domain.KindProgramOpened), Event: ev})
	if errors.Is(err, eventstore.ErrConflict) {
		// The programme was opened by another request between our load
		// and append (a retry of this one would have been recognised).
		return eventstore.AppendResult{}, failure.AlreadyExists("program_id", "programme %s is already open", prog.ID())
	}
	return res, err
}

// CloseProgram is the command to stop a programme taking orders.
type CloseProgram struct {
	RequestID   string
	Fingerprint string
	ProgramID   string
	Reason      string
	Meta        eventstore.Metadata
}

// CloseProgram closes a programme, once per request id. Reservations
// appended meanwhile do not change the decision, so a lost race is retried.
func (p *Procurement) CloseProgram(ctx context.Context, cmd CloseProgram) (_ eventstore.AppendResult, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("program_id", cmd.ProgramID); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "procurement.CloseProgram:" + cmd.RequestID
	return retry(ctx, p.log, "close program", func() (eventstore.AppendResult, error) {
		prog, seen, err := p.events.LoadProgram(ctx, cmd.ProgramID)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
			return res, err
		}
		ev, err := prog.Close(cmd.Reason)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		return p.events.Append(ctx, prog, key, cmd.Fingerprint, cmd.Meta,
			domain.Change{Subject: domain.ProgramSubject(prog.ID(), domain.KindProgramClosed), Event: ev})
	})
}

// Program returns a programme, as its events say now.
func (p *Procurement) Program(ctx context.Context, programID string) (*domain.Program, error) {
	if err := ident.Check("program_id", programID); err != nil {
		return nil, err
	}
	prog, _, err := p.events.LoadProgram(ctx, programID)
	if err != nil {
		return nil, err
	}
	if !prog.Opened() {
		return nil, failure.NotFound("program_id", "programme %s does not exist", programID)
	}
	return prog, nil
}
