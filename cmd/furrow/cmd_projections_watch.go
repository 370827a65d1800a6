package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

// barInterval is how often a progress bar on a terminal is redrawn: the
// server sends a status no sooner (WatchProjectionRequest.interval).
const barInterval = 250 * time.Millisecond

// watchHeartbeat is the longest the server stays silent on a watch with
// an interval up to it (admin.proto, WatchProjection).
const watchHeartbeat = 5 * time.Second

// The bounds of WatchProjectionRequest.interval (admin.proto), checked
// here too so that a bad --every is a usage error.
const (
	minEvery = 50 * time.Millisecond
	maxEvery = time.Minute
)

// checkEvery refuses an --every the server would.
func checkEvery(every time.Duration) error {
	if every < minEvery || every > maxEvery {
		return usagef("--every %s: want from %s to %s", every, minEvery, maxEvery)
	}
	return nil
}

// errStopped: the watch ended because the command's context did (Ctrl-C).
var errStopped = errors.New("stopped following")

// errSilent: the server sent nothing for longer than it ever should.
var errSilent = errors.New("the server stopped reporting")

// terminal reports whether the command's output is a terminal that can
// redraw a progress display in place: not with -o json, not to a file or
// pipe, not with TERM=dumb.
func (o *opEnv) terminal() bool {
	if o.json || o.getenv("TERM") == "dumb" {
		return false
	}
	f, ok := o.stdout.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watchProjection follows req's stream and calls each with every status
// until each says done, the server ends the stream (nil), ctx ends
// (errStopped), or the server is silent for longer than --timeout and
// twice its heartbeat (an unreachable error: it sends a status at least
// every heartbeat). --timeout does not bound the watch itself: a rebuild
// may take longer.
func (o *opEnv) watchProjection(ctx context.Context, c adminv1.AdminServiceClient, req *adminv1.WatchProjectionRequest,
	each func(*adminv1.Projection) (done bool, err error),
) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	quiet := max(o.timeout, 2*max(watchHeartbeat, req.GetInterval().AsDuration()))
	silence := time.AfterFunc(quiet, func() { cancel(errSilent) })
	defer silence.Stop()
	what := "watch " + req.GetName()
	st, err := c.WatchProjection(ctx, req)
	for err == nil {
		var res *adminv1.WatchProjectionResponse
		if res, err = st.Recv(); err != nil {
			break
		}
		silence.Reset(quiet)
		if done, eachErr := each(res.GetProjection()); done || eachErr != nil {
			return eachErr
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case errors.Is(context.Cause(ctx), errSilent):
		return callError{codes.Unavailable, fmt.Errorf("%s: no status from Furrow at %s for %s: %w", what, o.addr, human(quiet), errSilent)}
	case ctx.Err() != nil:
		return errStopped
	}
	return o.callErr(what, err)
}

// liveLines redraws a block of lines in place on a terminal: back to the
// block's first line, clear to the end of the screen, print it again.
type liveLines struct {
	w io.Writer
	n int
}

func (l *liveLines) draw(lines ...string) {
	if l.n > 0 {
		fmt.Fprintf(l.w, "\x1b[%dF\x1b[J", l.n)
	}
	for _, s := range lines {
		fmt.Fprintln(l.w, s)
	}
	l.n = len(lines)
}

// bar renders done of total as a bar width characters wide between
// brackets; full when total is 0 (nothing to do).
func bar(done, total uint64, width int) string {
	filled := width
	if total > 0 && done < total {
		filled = int(uint64(width) * done / total)
	}
	b := strings.Repeat("=", filled)
	if filled < width {
		b += ">" + strings.Repeat(" ", width-filled-1)
	}
	return "[" + b + "]"
}

// copyVersion returns p's copy version, nil if p has none.
func copyVersion(p *adminv1.Projection, version int64) *adminv1.ProjectionCopy {
	for _, c := range p.GetCopies() {
		if c.GetVersion() == version {
			return c
		}
	}
	return nil
}

// followRebuild follows shadow copy version of name until it has caught
// up: a bar redrawn in place on a terminal, a progress line per status
// (every `every` at most) otherwise, the statuses as JSON lines with -o
// json. Ctrl-C stops following and leaves the rebuild running.
func followRebuild(ctx context.Context, o *opEnv, c adminv1.AdminServiceClient, name string, version int64, every time.Duration) error {
	term := o.terminal()
	interval := every
	if term {
		interval = barInterval
	}
	view := &liveLines{w: o.stdout}
	var last *adminv1.ProjectionCopy
	err := o.watchProjection(ctx, c, &adminv1.WatchProjectionRequest{Name: name, Interval: durationpb.New(interval), UntilCaughtUp: true},
		func(p *adminv1.Projection) (bool, error) {
			shadow := copyVersion(p, version)
			if shadow == nil {
				return true, fmt.Errorf("shadow copy v%d of %s is gone (dropped?)", version, name)
			}
			last = shadow
			switch {
			case o.json:
				if err := o.printJSONLine(&adminv1.WatchProjectionResponse{Projection: p}); err != nil {
					return true, err
				}
			case term:
				view.draw(fmt.Sprintf("  v%d %s %s", version, bar(shadow.GetApplied(), shadow.GetTotal(), 30), progress(shadow)))
			default:
				fmt.Fprintf(o.stdout, "  v%d: %s\n", version, progress(shadow))
			}
			if shadow.GetState() == adminv1.ProjectionState_PROJECTION_STATE_BLOCKED {
				return true, fmt.Errorf("the rebuild stopped at a failing event: %s", shadow.GetReason())
			}
			// Caught up: it reached the stream's head once; from there it
			// follows new events like the live copy (under load, a few may
			// be in flight at any moment).
			return shadow.GetCaughtUp(), nil
		})
	switch {
	case errors.Is(err, errStopped):
		fmt.Fprintf(o.stderr, "stopped following; the rebuild goes on in the server (furrow projections watch %s)\n", name)
		return nil
	case err != nil:
		return err
	case !last.GetCaughtUp():
		return fmt.Errorf("the server stopped reporting on %s before shadow copy v%d caught up (furrow projections status %s)", name, version, name)
	}
	if !o.json {
		fmt.Fprintf(o.stdout, "shadow copy v%d has caught up. Next: furrow projections diff %s\n", version, name)
	}
	return nil
}

func runProjectionsWatch(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow projections watch", `Usage: furrow projections watch NAME [flags]

Follows NAME's status as the server reports it (a stream, not polling):
every copy's state, checkpoint and lag, and a rebuild's progress (events
done / total, rate, time left). On a terminal the display is redrawn in
place; otherwise a line per status (when something changes, at most every
--every, and every 5 seconds at least); -o json prints each status as a
line of JSON. Runs until Ctrl-C, or with --until-caught-up until no
shadow copy is rebuilding.
`)
	every := fs.Duration("every", time.Second, "print at most this often (not on a terminal)")
	untilCaughtUp := fs.Bool("until-caught-up", false, "stop once no shadow copy is still rebuilding")
	pos, err := o.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	if err := checkEvery(*every); err != nil {
		return err
	}
	c, _, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	term := o.terminal()
	interval := *every
	if term {
		interval = barInterval
	}
	view := &liveLines{w: o.stdout}
	err = o.watchProjection(ctx, c, &adminv1.WatchProjectionRequest{Name: pos[0], Interval: durationpb.New(interval), UntilCaughtUp: *untilCaughtUp},
		func(p *adminv1.Projection) (bool, error) {
			switch {
			case o.json:
				return false, o.printJSONLine(&adminv1.WatchProjectionResponse{Projection: p})
			case term:
				view.draw(watchLines(p)...)
			default:
				fmt.Fprintln(o.stdout, watchLine(p))
			}
			return false, nil
		})
	if errors.Is(err, errStopped) {
		return nil
	}
	return err
}

// watchLine is one projection status on one line, for logs.
func watchLine(p *adminv1.Projection) string {
	parts := []string{fmt.Sprintf("%s: live v%d %s at %d of %d, lag %s", p.GetName(), p.GetVersion(), stateName(p.GetState()),
		p.GetCheckpoint(), p.GetStreamHead(), plural(p.GetLagEvents(), "event"))}
	if !p.GetHealthy() && p.GetReason() != "" {
		parts[0] += " (" + p.GetReason() + ")"
	}
	for _, c := range sortedCopies(p) {
		if c.GetRole() == "shadow" {
			parts = append(parts, fmt.Sprintf("shadow v%d: %s", c.GetVersion(), progress(c)))
		}
	}
	return strings.Join(parts, "; ")
}

// watchLines is one projection status as a block for a terminal: a line
// for the projection, one per copy, a bar for a rebuild.
func watchLines(p *adminv1.Projection) []string {
	health := "healthy"
	if !p.GetHealthy() {
		health = "UNHEALTHY: " + p.GetReason()
	}
	lines := []string{fmt.Sprintf("%s (%s) — %s, %s; stream %s head %d", p.GetName(), p.GetService(), stateName(p.GetState()),
		health, p.GetStream(), p.GetStreamHead())}
	for _, c := range sortedCopies(p) {
		switch c.GetRole() {
		case "shadow":
			lines = append(lines, fmt.Sprintf("  v%d shadow  %s %s", c.GetVersion(), bar(c.GetApplied(), c.GetTotal(), 30), progress(c)))
		case "retired":
			lines = append(lines, fmt.Sprintf("  v%d retired frozen at %d", c.GetVersion(), c.GetCheckpoint()))
		default:
			lag := plural(c.GetLagEvents(), "event")
			if c.GetLagEvents() > 0 {
				lag += ", oldest waiting " + dur(c.GetLagTime())
			}
			lines = append(lines, fmt.Sprintf("  v%d %-7s %s at %d, lag %s, last applied %s", c.GetVersion(), c.GetRole(), stateName(c.GetState()),
				c.GetCheckpoint(), lag, ago(c.GetLastAppliedAt())))
		}
	}
	return lines
}

// sortedCopies returns p's copies, oldest first.
func sortedCopies(p *adminv1.Projection) []*adminv1.ProjectionCopy {
	copies := append([]*adminv1.ProjectionCopy(nil), p.GetCopies()...)
	sort.Slice(copies, func(i, j int) bool { return copies[i].GetVersion() < copies[j].GetVersion() })
	return copies
}
