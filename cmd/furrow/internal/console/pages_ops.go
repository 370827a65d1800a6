package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

// streamSample is a stream's message count when last seen, for its rate.
type streamSample struct {
	at   time.Time
	msgs uint64
	rate float64
}

type streamRow struct {
	*adminv1.Stream
	Rate float64
}

type projectionRow struct {
	*adminv1.Projection
	Admin string
	// Stalled vs idle: what an operator has to act on.
	Label string
	Class string
}

type overviewData struct {
	Streams     []streamRow
	Projections []projectionRow
	DeadLetters int
	Unhealthy   int
	At          time.Time
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	d, errs := c.loadOverview(r)
	c.render(w, r, "overview", "Overview", "overview", d, errs...)
}

// overviewLive is the part of the overview that htmx polls.
func (c *Console) overviewLive(w http.ResponseWriter, r *http.Request) {
	d, errs := c.loadOverview(r)
	c.fragment(w, r, "overview", d, errs...)
}

func (c *Console) loadOverview(r *http.Request) (overviewData, []error) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	var d overviewData
	var errs []error
	d.At = time.Now()
	streams, err := c.c.admins[0].ListStreams(ctx, &adminv1.ListStreamsRequest{})
	errs = append(errs, err)
	now := time.Now()
	c.mu.Lock()
	for _, s := range streams.GetStreams() {
		prev, ok := c.samples[s.GetName()]
		rate := prev.rate
		if ok && now.Sub(prev.at) >= time.Second {
			rate = float64(s.GetMessages()-min(prev.msgs, s.GetMessages())) / now.Sub(prev.at).Seconds()
		}
		if !ok || now.Sub(prev.at) >= time.Second {
			c.samples[s.GetName()] = streamSample{at: now, msgs: s.GetMessages(), rate: rate}
		}
		d.Streams = append(d.Streams, streamRow{Stream: s, Rate: rate})
	}
	c.mu.Unlock()
	d.Projections, err = c.listProjections(ctx)
	errs = append(errs, err)
	for _, p := range d.Projections {
		if !p.GetHealthy() {
			d.Unhealthy++
		}
	}
	letters, err := c.listDeadLetters(ctx, false)
	errs = append(errs, err)
	d.DeadLetters = len(letters)
	return d, errs
}

// listProjections merges every process's projections, by name.
func (c *Console) listProjections(ctx context.Context) ([]projectionRow, error) {
	var rows []projectionRow
	var errs []error
	for _, a := range c.c.admins {
		res, err := a.ListProjections(ctx, &adminv1.ListProjectionsRequest{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range res.GetProjections() {
			rows = append(rows, newProjectionRow(p, a.name))
		}
	}
	slices.SortFunc(rows, func(a, b projectionRow) int { return strings.Compare(a.GetName(), b.GetName()) })
	return rows, errors.Join(errs...)
}

func newProjectionRow(p *adminv1.Projection, admin string) projectionRow {
	row := projectionRow{Projection: p, Admin: admin}
	switch p.GetState() {
	case adminv1.ProjectionState_PROJECTION_STATE_IDLE:
		row.Label, row.Class = "idle", "ok"
	case adminv1.ProjectionState_PROJECTION_STATE_CATCHING_UP:
		row.Label, row.Class = "catching up", "busy"
	case adminv1.ProjectionState_PROJECTION_STATE_FAILING:
		row.Label, row.Class = "failing", "bad"
	case adminv1.ProjectionState_PROJECTION_STATE_BLOCKED:
		row.Label, row.Class = "blocked", "bad"
	case adminv1.ProjectionState_PROJECTION_STATE_STALLED:
		row.Label, row.Class = "stalled", "bad"
	case adminv1.ProjectionState_PROJECTION_STATE_PAUSED:
		row.Label, row.Class = "paused", "warn"
	case adminv1.ProjectionState_PROJECTION_STATE_STOPPED:
		row.Label, row.Class = "stopped", "warn"
	default:
		row.Label, row.Class = "unknown", "warn"
	}
	return row
}

// adminFor finds the process that runs projection name.
func (c *Console) adminFor(ctx context.Context, name string) (adminClient, *adminv1.Projection, error) {
	var last error
	for _, a := range c.c.admins {
		res, err := a.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: name})
		if err == nil {
			return a, res.GetProjection(), nil
		}
		last = err
		if status.Code(err) != codes.NotFound {
			break
		}
	}
	return adminClient{}, nil, last
}

type eventsData struct {
	Streams   []string
	Stream    string
	Aggregate string
	Subject   string
	Type      string
	From, To  string
	After     uint64
	Events    []*adminv1.Event
	Types     []string
	Truncated bool
	NextAfter uint64
	Caused    string
}

func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	q := r.URL.Query()
	d := eventsData{Stream: q.Get("stream"), Aggregate: q.Get("aggregate"), Subject: q.Get("subject"), Type: q.Get("type"),
		From: q.Get("from"), To: q.Get("to"), Caused: q.Get("caused_by")}
	d.After, _ = strconv.ParseUint(q.Get("after"), 10, 64)
	var errs []error
	streams, err := c.c.admins[0].ListStreams(ctx, &adminv1.ListStreamsRequest{})
	errs = append(errs, err)
	for _, s := range streams.GetStreams() {
		if s.GetName() != "DEADLETTER" {
			d.Streams = append(d.Streams, s.GetName())
		}
	}
	from, errFrom := parseDay(d.From)
	to, errTo := parseDay(d.To)
	errs = append(errs, errFrom, errTo)
	if d.Caused != "" {
		evs, err := c.scanEvents(ctx, func(e *adminv1.Event) bool { return e.GetCausationId() == d.Caused && e.GetId() != d.Caused })
		errs = append(errs, err)
		d.Events = evs
	} else {
		res, err := c.c.admins[0].ListEvents(ctx, &adminv1.ListEventsRequest{Stream: d.Stream, Aggregate: d.Aggregate, Subject: d.Subject,
			AfterSequence: d.After, Limit: 200})
		errs = append(errs, err)
		d.Truncated = res.GetTruncated()
		seen := map[string]bool{}
		for _, e := range res.GetEvents() {
			if !seen[e.GetType()] {
				seen[e.GetType()] = true
				d.Types = append(d.Types, e.GetType())
			}
			d.NextAfter = e.GetSequence()
			if d.Type != "" && !strings.Contains(e.GetType(), d.Type) {
				continue
			}
			at := e.GetStoredAt().AsTime()
			if (!from.IsZero() && at.Before(from)) || (!to.IsZero() && !at.Before(to.AddDate(0, 0, 1))) {
				continue
			}
			d.Events = append(d.Events, e)
		}
		slices.Sort(d.Types)
	}
	c.render(w, r, "events", "Events", "events", d, errs...)
}

func parseDay(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, shanghai)
	if err != nil {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "date %q: want YYYY-MM-DD", s)
	}
	return t, nil
}

// scanLimit bounds how many events a search by id reads: the AdminService
// has no index by event id, so the console reads the streams in order.
const scanLimit = 50_000

// scanEvents reads every event stream (up to scanLimit events) and keeps
// those match accepts.
func (c *Console) scanEvents(ctx context.Context, match func(*adminv1.Event) bool) ([]*adminv1.Event, error) {
	streams, err := c.c.admins[0].ListStreams(ctx, &adminv1.ListStreamsRequest{})
	if err != nil {
		return nil, err
	}
	var out []*adminv1.Event
	read := 0
	for _, s := range streams.GetStreams() {
		if s.GetName() == "DEADLETTER" {
			continue
		}
		after := uint64(0)
		for read < scanLimit {
			res, err := c.c.admins[0].ListEvents(ctx, &adminv1.ListEventsRequest{Stream: s.GetName(), AfterSequence: after, Limit: 2000})
			if err != nil {
				return out, err
			}
			for _, e := range res.GetEvents() {
				read++
				after = e.GetSequence()
				if match(e) {
					out = append(out, e)
				}
			}
			if !res.GetTruncated() || len(res.GetEvents()) == 0 {
				break
			}
		}
	}
	return out, nil
}

type eventData struct {
	Event  *adminv1.Event
	Cause  string
	Others []header
}

type header struct{ Name, Value string }

func (c *Console) event(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		http.Error(w, "bad sequence", http.StatusBadRequest)
		return
	}
	res, err := c.c.admins[0].GetEvent(ctx, &adminv1.GetEventRequest{Stream: r.PathValue("stream"), Sequence: seq})
	d := eventData{Event: res.GetEvent()}
	for k, v := range res.GetEvent().GetHeaders() {
		d.Others = append(d.Others, header{k, v})
	}
	slices.SortFunc(d.Others, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	c.render(w, r, "event", "Event "+r.PathValue("stream")+" #"+r.PathValue("seq"), "events", d, err)
}

// eventByID follows a causation link: the event whose id it names.
func (c *Console) eventByID(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	id := r.PathValue("id")
	evs, err := c.scanEvents(ctx, func(e *adminv1.Event) bool { return e.GetId() == id })
	if err == nil && len(evs) > 0 {
		http.Redirect(w, r, "/events/"+url.PathEscape(evs[0].GetStream())+"/"+strconv.FormatUint(evs[0].GetSequence(), 10), http.StatusFound)
		return
	}
	if err == nil {
		err = status.Errorf(codes.NotFound, "no event with id %q: a causation id that is no event id is the id of the request that caused it", id)
	}
	c.render(w, r, "events", "Events", "events", eventsData{}, err)
}

type projectionsData struct{ Projections []projectionRow }

func (c *Console) projections(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	rows, err := c.listProjections(ctx)
	c.render(w, r, "projections", "Projections", "projections", projectionsData{rows}, err)
}

type projectionData struct {
	P      projectionRow
	Shadow *adminv1.ProjectionCopy
	Copies []*adminv1.ProjectionCopy
	// Rebuilding: a shadow copy that has not caught up yet.
	Rebuilding bool
}

func (c *Console) loadProjection(r *http.Request) (projectionData, error) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	a, p, err := c.adminFor(ctx, r.PathValue("name"))
	if err != nil {
		return projectionData{}, err
	}
	d := projectionData{P: newProjectionRow(p, a.name), Copies: p.GetCopies()}
	for _, cp := range p.GetCopies() {
		if cp.GetRole() == "shadow" {
			d.Shadow = cp
			d.Rebuilding = !cp.GetCaughtUp()
		}
	}
	return d, nil
}

func (c *Console) projection(w http.ResponseWriter, r *http.Request) {
	d, err := c.loadProjection(r)
	c.render(w, r, "projection", "Projection "+r.PathValue("name"), "projections", d, err)
}

// projectionProgress is the rebuild's progress bar, polled by htmx.
func (c *Console) projectionProgress(w http.ResponseWriter, r *http.Request) {
	d, err := c.loadProjection(r)
	c.fragment(w, r, "projection", d, err)
}

type diffData struct {
	Name string
	Diff *adminv1.DiffProjectionResponse
}

func (c *Console) projectionDiff(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	name := r.PathValue("name")
	version, _ := strconv.ParseInt(r.URL.Query().Get("version"), 10, 64)
	a, _, err := c.adminFor(ctx, name)
	var diff *adminv1.DiffProjectionResponse
	if err == nil {
		diff, err = a.DiffProjection(ctx, &adminv1.DiffProjectionRequest{Name: name, Version: version, Samples: 20})
	}
	c.render(w, r, "diff", "Diff "+name, "projections", diffData{Name: name, Diff: diff}, err)
}

// projectionAction runs rebuild, swap, drop, pause or resume.
func (c *Console) projectionAction(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	ctx = c.actorCtx(ctx)
	name := r.PathValue("name")
	a, _, err := c.adminFor(ctx, name)
	back := "/projections/" + url.PathEscape(name)
	if err != nil {
		redirect(w, r, back, errText(err))
		return
	}
	var flash string
	switch r.PathValue("action") {
	case "rebuild":
		from, _ := strconv.ParseUint(r.FormValue("from_sequence"), 10, 64)
		var res *adminv1.RebuildProjectionResponse
		res, err = a.RebuildProjection(ctx, &adminv1.RebuildProjectionRequest{Name: name, FromSequence: from})
		flash = "Rebuilding into shadow copy v" + strconv.FormatInt(res.GetVersion(), 10)
	case "swap":
		var res *adminv1.SwapProjectionResponse
		res, err = a.SwapProjection(ctx, &adminv1.SwapProjectionRequest{Name: name})
		flash = "Copy v" + strconv.FormatInt(res.GetLiveVersion(), 10) + " is live; v" + strconv.FormatInt(res.GetRetiredVersion(), 10) + " retired"
	case "drop":
		v, _ := strconv.ParseInt(r.FormValue("version"), 10, 64)
		_, err = a.DropProjectionCopy(ctx, &adminv1.DropProjectionCopyRequest{Name: name, Version: v})
		flash = "Copy v" + strconv.FormatInt(v, 10) + " dropped"
	case "pause":
		_, err = a.PauseProjection(ctx, &adminv1.PauseProjectionRequest{Name: name, Reason: r.FormValue("reason")})
		flash = "Paused"
	case "resume":
		_, err = a.ResumeProjection(ctx, &adminv1.ResumeProjectionRequest{Name: name})
		flash = "Resumed"
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		flash = errText(err)
	}
	redirect(w, r, back, flash)
}

type deadLettersData struct {
	All     bool
	Letters []deadLetterRow
}

type deadLetterRow struct {
	*adminv1.DeadLetter
	Admin string
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	d := deadLettersData{All: r.URL.Query().Get("all") == "1"}
	var err error
	d.Letters, err = c.listDeadLetters(ctx, d.All)
	c.render(w, r, "deadletters", "Dead letters", "deadletters", d, err)
}

// listDeadLetters lists the dead letters every process reports, once each:
// they share the DEADLETTER stream.
func (c *Console) listDeadLetters(ctx context.Context, all bool) ([]deadLetterRow, error) {
	var rows []deadLetterRow
	var errs []error
	seen := map[uint64]bool{}
	for _, a := range c.c.admins {
		res, err := a.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{All: all})
		errs = append(errs, err)
		for _, l := range res.GetDeadLetters() {
			if !seen[l.GetSequence()] {
				seen[l.GetSequence()] = true
				rows = append(rows, deadLetterRow{DeadLetter: l, Admin: a.name})
			}
		}
	}
	slices.SortFunc(rows, func(a, b deadLetterRow) int { return int(a.GetSequence()) - int(b.GetSequence()) })
	return rows, errors.Join(errs...)
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	seq, _ := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	var dl *adminv1.DeadLetter
	var err error
	for _, a := range c.c.admins {
		var res *adminv1.GetDeadLetterResponse
		if res, err = a.GetDeadLetter(ctx, &adminv1.GetDeadLetterRequest{Sequence: seq}); err == nil {
			dl = res.GetDeadLetter()
			break
		}
	}
	c.render(w, r, "deadletter", "Dead letter #"+r.PathValue("seq"), "deadletters", dl, err)
}

func (c *Console) redrive(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcCtx(r)
	defer cancel()
	ctx = c.actorCtx(ctx)
	seq, _ := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	var err error
	var res *adminv1.RedriveDeadLetterResponse
	// Only the process that runs the letter's consumer can redrive it.
	for _, a := range c.c.admins {
		if res, err = a.RedriveDeadLetter(ctx, &adminv1.RedriveDeadLetterRequest{Sequence: seq}); err == nil {
			break
		}
	}
	flash := "Redriven: " + res.GetOutcome()
	if err != nil {
		flash = errText(err)
	}
	redirect(w, r, "/dead-letters/"+r.PathValue("seq"), flash)
}
