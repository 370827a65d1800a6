package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

const projectionsUsage = `Usage: furrow projections <command> [flags]

Watch and operate the read models: lag and health, rebuilds into a shadow
copy beside the live one, diff, swap, pause and resume.

A rebuild without downtime:
  furrow projections rebuild NAME      # shadow copy, follows its progress
  furrow projections watch NAME        # follow it again (after Ctrl-C)
  furrow projections diff NAME         # shadow vs live at the same position
  furrow projections swap NAME         # readers move to the shadow at once
  furrow projections drop NAME --version OLD   # when you no longer need it
`

var projectionsCommands = []opCommand{
	{"ls", "list projections: state, checkpoint, lag (events and time)", runProjectionsLs},
	{"status", "health of one or all projections; exits 5 if any is unhealthy", runProjectionsStatus},
	{"watch", "follow a projection's status and a rebuild's progress, streamed", runProjectionsWatch},
	{"rebuild", "rebuild into a shadow copy (from zero, --from-seq or --since)", runProjectionsRebuild},
	{"diff", "compare the shadow copy with the live one, row by row", runProjectionsDiff},
	{"swap", "make the shadow copy live (atomic for readers)", runProjectionsSwap},
	{"drop", "delete a retired copy, or the shadow (cancels its rebuild)", runProjectionsDrop},
	{"pause", "stop applying events (survives restarts)", runProjectionsPause},
	{"resume", "resume a paused projection", runProjectionsResume},
}

func runProjections(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return runGroup(ctx, "projections", projectionsUsage, projectionsCommands, args, stdout, stderr, getenv)
}

// stateName renders a state for people: idle, catching_up, stalled, …
func stateName(s adminv1.ProjectionState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "PROJECTION_STATE_"))
}

func runProjectionsLs(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections ls", `Usage: furrow projections ls [flags]

Lists every projection with its state, live copy, checkpoint, the stream's
head, its lag in events and in time (age of the oldest event not yet
applied) and its last heartbeat.
`)
	if _, err := o.parse(fs, args, 0, 0, ""); err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.ListProjections(ctx, &adminv1.ListProjectionsRequest{})
	if err != nil {
		return o.callErr("list projections", err)
	}
	if o.json {
		return o.printJSON(res)
	}
	printProjectionTable(o, res.GetProjections())
	return nil
}

func printProjectionTable(o *opEnv, ps []*adminv1.Projection) {
	tw := o.table()
	fmt.Fprintln(tw, "NAME\tSERVICE\tSTATE\tCOPY\tCHECKPOINT\tHEAD\tLAG\tLAG TIME\tLAST APPLIED\tHEARTBEAT\tSHADOW")
	for _, p := range ps {
		copyName := "-"
		if p.GetVersion() > 0 {
			copyName = fmt.Sprintf("v%d", p.GetVersion())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.GetName(), p.GetService(), stateName(p.GetState()),
			copyName, p.GetCheckpoint(), p.GetStreamHead(), count(p.GetLagEvents()), dur(p.GetLagTime()),
			ago(p.GetLastAppliedAt()), ago(p.GetHeartbeatAt()), shadowSummary(p))
	}
	_ = tw.Flush()
}

// shadowSummary is the rebuild's progress, "-" without a shadow copy.
func shadowSummary(p *adminv1.Projection) string {
	for _, c := range p.GetCopies() {
		if c.GetRole() == "shadow" {
			return fmt.Sprintf("v%d %s", c.GetVersion(), progress(c))
		}
	}
	return "-"
}

// progress renders a copy's rebuild progress: done/total, rate, time left.
func progress(c *adminv1.ProjectionCopy) string {
	pct := 100.0
	if c.GetTotal() > 0 {
		pct = 100 * float64(c.GetApplied()) / float64(c.GetTotal())
	}
	s := fmt.Sprintf("%s/%s events (%.0f%%)", count(c.GetApplied()), count(c.GetTotal()), pct)
	if c.GetRate() > 0 {
		s += fmt.Sprintf(", %s/s", count(uint64(c.GetRate())))
	}
	switch {
	case c.GetState() == adminv1.ProjectionState_PROJECTION_STATE_BLOCKED || c.GetState() == adminv1.ProjectionState_PROJECTION_STATE_STALLED:
		s += ", " + stateName(c.GetState())
	case c.GetCaughtUp() && c.GetLagEvents() == 0:
		s += ", caught up"
	case c.GetCaughtUp():
		s += ", caught up, following new events"
	case c.GetEta() != nil:
		s += ", ~" + dur(c.GetEta()) + " left"
	}
	return s
}

func runProjectionsStatus(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections status", `Usage: furrow projections status [NAME] [flags]

Reports the health of one projection (with all its copies) or of all.
A projection is healthy when idle (caught up, its loop beating) or
catching up (its checkpoint moving). Stalled (no progress or no heartbeat
for too long), failing, blocked at a parked event, paused or stopped are
reported with the reason, and the command exits 5, so it can guard a
deploy or page someone.
`)
	pos, err := o.parse(fs, args, 0, 1, "[NAME]")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	var ps []*adminv1.Projection
	if len(pos) == 1 {
		res, err := c.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: pos[0]})
		if err != nil {
			return o.callErr("projection "+pos[0], err)
		}
		ps = []*adminv1.Projection{res.GetProjection()}
		if o.json {
			if err := o.printJSON(res); err != nil {
				return err
			}
		}
	} else {
		res, err := c.ListProjections(ctx, &adminv1.ListProjectionsRequest{})
		if err != nil {
			return o.callErr("list projections", err)
		}
		ps = res.GetProjections()
		if o.json {
			if err := o.printJSON(res); err != nil {
				return err
			}
		}
	}
	unhealthy := 0
	for i, p := range ps {
		if !p.GetHealthy() {
			unhealthy++
		}
		if o.json {
			continue
		}
		if i > 0 {
			fmt.Fprintln(o.stdout)
		}
		printProjection(o, p)
	}
	if unhealthy > 0 {
		return fmt.Errorf("%w: %d of %d projections need attention", errUnhealthy, unhealthy, len(ps))
	}
	return nil
}

// printProjection prints one projection in full.
func printProjection(o *opEnv, p *adminv1.Projection) {
	health := "healthy"
	if !p.GetHealthy() {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(o.stdout, "%s (%s) — %s, %s\n", p.GetName(), p.GetService(), stateName(p.GetState()), health)
	tw := o.table()
	rows := [][2]string{
		{"Stream", fmt.Sprintf("%s, head %d", p.GetStream(), p.GetStreamHead())},
		{"Checkpoint", fmt.Sprintf("%d (live copy v%d)", p.GetCheckpoint(), p.GetVersion())},
		{"Lag", fmt.Sprintf("%s, oldest waiting %s", plural(p.GetLagEvents(), "event"), dur(p.GetLagTime()))},
		{"Last applied", fmt.Sprintf("%s (%s)", stamp(p.GetLastAppliedAt()), ago(p.GetLastAppliedAt()))},
		{"Heartbeat", ago(p.GetHeartbeatAt())},
		{"On failure", p.GetFailurePolicy() + " (after retries the event is parked in DEADLETTER)"},
	}
	if p.GetReason() != "" {
		rows = append(rows, [2]string{"Reason", p.GetReason()})
	}
	if p.GetDeadLetter() != 0 {
		rows = append(rows, [2]string{"Dead letter", fmt.Sprintf("%d  (furrow dlq show %d; redrive after the fix)", p.GetDeadLetter(), p.GetDeadLetter())})
	}
	if p.GetSkipped() > 0 {
		rows = append(rows, [2]string{"Skipped", fmt.Sprintf("%d events (furrow dlq ls --consumer %s)", p.GetSkipped(), p.GetName())})
	}
	if !p.GetVersioned() {
		rows = append(rows, [2]string{"Rebuild", "not possible: the projection writes fixed table names (see projection.Versioned)"})
	}
	for _, kv := range rows {
		fmt.Fprintf(tw, "  %s:\t%s\n", kv[0], kv[1])
	}
	_ = tw.Flush()
	if len(p.GetCopies()) == 0 {
		return
	}
	tw = o.table()
	fmt.Fprintln(tw, "  COPY\tROLE\tSTATE\tCHECKPOINT\tAPPLIED\tFROM\tCREATED\tPROGRESS")
	copies := append([]*adminv1.ProjectionCopy(nil), p.GetCopies()...)
	sort.Slice(copies, func(i, j int) bool { return copies[i].GetVersion() < copies[j].GetVersion() })
	for _, c := range copies {
		state, prog := stateName(c.GetState()), "-"
		if c.GetRole() == "retired" {
			state = "frozen"
		}
		if c.GetRole() == "shadow" {
			prog = progress(c)
		}
		fmt.Fprintf(tw, "  v%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", c.GetVersion(), c.GetRole(), state, c.GetCheckpoint(),
			count(c.GetApplied()), c.GetFromSequence(), stamp(c.GetCreatedAt()), prog)
	}
	_ = tw.Flush()
}

func runProjectionsRebuild(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections rebuild", `Usage: furrow projections rebuild NAME [flags]

Rebuilds NAME into a new shadow copy while the live copy keeps serving
queries and keeps following the stream. The shadow copy is fed from the
start of the stream, or from --from-seq / --since (it then reflects
only the events from there on). The command follows the progress (events
done / total, rate, time left) as the server streams it, until the shadow
has caught up: a progress bar on a terminal, otherwise a line when it
moves (at most every --every, every 5 seconds at least), or with -o json
each status as a line of JSON. Ctrl-C or --detach leaves the rebuild
running in the server (furrow projections watch NAME follows it again).

Then: furrow projections diff NAME, and furrow projections swap NAME.
`)
	fromSeq := fs.Uint64("from-seq", 0, "start at this stream sequence")
	fromTime := fs.String("since", "", "start at the first event stored at or after this time (RFC 3339 or YYYY-MM-DD)")
	fs.Var(stringAlias{fromTime}, "from-time", "the same as --since")
	detach := fs.Bool("detach", false, "start the rebuild and return at once")
	every := fs.Duration("every", time.Second, "print progress at most this often (not on a terminal)")
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	if err := checkEvery(*every); err != nil {
		return err
	}
	req := &adminv1.RebuildProjectionRequest{Name: pos[0], FromSequence: *fromSeq}
	if *fromTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *fromTime)
		if err != nil {
			t, err = time.Parse(time.DateOnly, *fromTime)
		}
		if err != nil {
			return usagef("--since %q: want RFC 3339 (2026-11-28T08:00:00+08:00) or a date (2026-11-28)", *fromTime)
		}
		req.FromTime = timestamppb.New(t)
	}
	c, callCtx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.RebuildProjection(callCtx, req)
	if err != nil {
		return o.callErr("rebuild "+pos[0], err)
	}
	if o.json && *detach {
		return o.printJSON(res)
	}
	if !o.json {
		fmt.Fprintf(o.stdout, "rebuilding %s into shadow copy v%d (live copy v%d keeps serving)\n", pos[0], res.GetVersion(), res.GetProjection().GetVersion())
	}
	if *detach {
		fmt.Fprintf(o.stdout, "follow it with: furrow projections watch %s\n", pos[0])
		return nil
	}
	return followRebuild(ctx, o, c, pos[0], res.GetVersion(), *every)
}

func runProjectionsDiff(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections diff", `Usage: furrow projections diff NAME [flags]

Compares the shadow copy (or --version V) with the live copy, table by
table, matching rows on their primary key: rows the shadow adds, rows it
removes, rows it changes (and in which columns), with a few samples. Both
copies are first held at the same stream position (the live copy keeps
serving reads), so an empty diff means the rebuild reproduced the live
read model exactly.
`)
	version := fs.Int64("version", 0, "compare this copy instead of the shadow")
	samples := fs.Int("samples", 5, "differing rows to show per table")
	check := fs.Bool("check", false, "exit 5 when the copies differ")
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	d, err := c.DiffProjection(ctx, &adminv1.DiffProjectionRequest{Name: pos[0], Version: *version, Samples: int32(*samples)})
	if err != nil {
		return o.callErr("diff "+pos[0], err)
	}
	if o.json {
		if err := o.printJSON(d); err != nil {
			return err
		}
	} else {
		printDiff(o, d)
	}
	if *check && !d.GetEmpty() {
		return problemf("copies v%d and v%d differ", d.GetLiveVersion(), d.GetOtherVersion())
	}
	return nil
}

func printDiff(o *opEnv, d *adminv1.DiffProjectionResponse) {
	fmt.Fprintln(o.stdout, d.GetSummary())
	tw := o.table()
	fmt.Fprintf(tw, "TABLE\tLIVE v%d\tv%d\tADDED\tREMOVED\tCHANGED\tKEY\n", d.GetLiveVersion(), d.GetOtherVersion())
	for _, t := range d.GetTables() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.GetTable(), count(t.GetLiveRows()), count(t.GetOtherRows()),
			count(t.GetAdded()), count(t.GetRemoved()), count(t.GetChanged()), strings.Join(t.GetKey(), ","))
	}
	_ = tw.Flush()
	for _, t := range d.GetTables() {
		if len(t.GetColumnsAdded())+len(t.GetColumnsRemoved()) > 0 {
			fmt.Fprintf(o.stdout, "%s: columns added %v, removed %v\n", t.GetTable(), t.GetColumnsAdded(), t.GetColumnsRemoved())
		}
		for _, s := range t.GetSamples() {
			key := strings.Join(t.GetKey(), ",") + "=" + strings.Join(s.GetKey(), ",")
			switch s.GetKind() {
			case "added":
				fmt.Fprintf(o.stdout, "  + %s %s\n", t.GetTable(), rowText(s.GetOther()))
			case "removed":
				fmt.Fprintf(o.stdout, "  - %s %s\n", t.GetTable(), rowText(s.GetLive()))
			default:
				var parts []string
				for _, col := range s.GetColumns() {
					parts = append(parts, fmt.Sprintf("%s: %s → %s", col, s.GetLive()[col], s.GetOther()[col]))
				}
				fmt.Fprintf(o.stdout, "  ~ %s [%s] %s\n", t.GetTable(), key, strings.Join(parts, "; "))
			}
		}
	}
}

// rowText renders a row as col=value pairs in column-name order.
func rowText(row map[string]string) string {
	cols := make([]string, 0, len(row))
	for c := range row {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c + "=" + row[c]
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func runProjectionsSwap(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections swap", `Usage: furrow projections swap NAME [flags]

Makes the shadow copy live. Both copies are held at the same stream
position, then one transaction re-points the tables readers query at the
shadow copy: a query sees the old copy or the new one, never a mix. The
old copy is kept, frozen, until 'furrow projections drop NAME --version V'.
`)
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.SwapProjection(ctx, &adminv1.SwapProjectionRequest{Name: pos[0]})
	if err != nil {
		return o.callErr("swap "+pos[0], err)
	}
	if o.json {
		return o.printJSON(res)
	}
	fmt.Fprintf(o.stdout, "%s: copy v%d is live (at stream position %d); v%d is retired and kept until dropped:\n  furrow projections drop %s --version %d\n",
		pos[0], res.GetLiveVersion(), res.GetPosition(), res.GetRetiredVersion(), pos[0], res.GetRetiredVersion())
	return nil
}

func runProjectionsDrop(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections drop", `Usage: furrow projections drop NAME --version V [flags]

Deletes copy V of NAME and its tables: a retired copy, or the shadow copy
(which cancels its rebuild). The live copy cannot be dropped.
`)
	version := fs.Int64("version", 0, "the copy to drop (required)")
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	if *version <= 0 {
		fs.Usage()
		return usagef("furrow projections drop: --version is required")
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.DropProjectionCopy(ctx, &adminv1.DropProjectionCopyRequest{Name: pos[0], Version: *version}); err != nil {
		return o.callErr(fmt.Sprintf("drop %s v%d", pos[0], *version), err)
	}
	if o.json {
		return o.printJSON(&adminv1.DropProjectionCopyResponse{})
	}
	fmt.Fprintf(o.stdout, "%s: copy v%d dropped\n", pos[0], *version)
	return nil
}

func runProjectionsPause(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections pause", `Usage: furrow projections pause NAME [flags]

Stops NAME applying events, after the batch in flight, in every process
sharing its database, until 'furrow projections resume NAME'. The pause
is stored, so it survives restarts. Queries keep reading the read model
as it was; their lag grows and status shows it paused.
`)
	reason := fs.String("reason", "", "why, for whoever reads the status next")
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.PauseProjection(ctx, &adminv1.PauseProjectionRequest{Name: pos[0], Reason: *reason})
	if err != nil {
		return o.callErr("pause "+pos[0], err)
	}
	if o.json {
		return o.printJSON(res)
	}
	fmt.Fprintf(o.stdout, "%s paused at checkpoint %d\n", pos[0], res.GetProjection().GetCheckpoint())
	return nil
}

func runProjectionsResume(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections resume", `Usage: furrow projections resume NAME [flags]

Resumes a paused projection from its checkpoint.
`)
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.ResumeProjection(ctx, &adminv1.ResumeProjectionRequest{Name: pos[0]})
	if err != nil {
		return o.callErr("resume "+pos[0], err)
	}
	if o.json {
		return o.printJSON(res)
	}
	fmt.Fprintf(o.stdout, "%s resumed from checkpoint %d (%s events waiting)\n", pos[0], res.GetProjection().GetCheckpoint(), count(res.GetProjection().GetLagEvents()))
	return nil
}
