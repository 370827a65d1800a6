package main

import (
	"context"
	"fmt"
	"io"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

const dlqUsage = `Usage: furrow dlq <command> [flags]

Handle dead letters: events a handler or a projection gave up on after its
retries, parked in the DEADLETTER stream with the reason and their source
stream and sequence. Fix the cause (deploy, data), then redrive them.
`

var dlqCommands = []opCommand{
	{"ls", "list parked events (--all: resolved ones too)", runDLQLs},
	{"show", "show one dead letter: reason, origin, the event decoded", runDLQShow},
	{"redrive", "hand a parked event to its handler or projection again", runDLQRedrive},
}

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return runGroup(ctx, "dlq", dlqUsage, dlqCommands, args, stdout, stderr, getenv)
}

func runDLQLs(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow dlq ls", `Usage: furrow dlq ls [flags]

Lists the dead letters still parked, oldest first: their id (DL), who
parked them (a handler or a projection), the source event and the reason.
`)
	consumer := fs.String("consumer", "", "only this handler's or projection's")
	all := fs.Bool("all", false, "include resolved (redriven) dead letters")
	if _, err := o.parse(fs, args, 0, 0, ""); err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{Consumer: *consumer, All: *all})
	if err != nil {
		return o.callErr("list dead letters", err)
	}
	if o.json {
		return o.printJSON(res)
	}
	if len(res.GetDeadLetters()) == 0 {
		fmt.Fprintln(o.stdout, "no dead letters")
		return nil
	}
	tw := o.table()
	fmt.Fprintln(tw, "DL\tPARKED\tKIND\tCONSUMER\tSOURCE\tSUBJECT\tATTEMPTS\tSTATUS\tREASON")
	for _, d := range res.GetDeadLetters() {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s:%d\t%s\t%d\t%s\t%s\n", d.GetSequence(), ago(d.GetParkedAt()), d.GetKind(), consumerName(d),
			d.GetSourceStream(), d.GetSourceSequence(), d.GetSourceSubject(), d.GetAttempts(), d.GetStatus(), clip(d.GetReason(), 80))
	}
	return tw.Flush()
}

func consumerName(d *adminv1.DeadLetter) string {
	if d.GetCopy() > 0 {
		return fmt.Sprintf("%s (v%d, %s)", d.GetConsumer(), d.GetCopy(), d.GetPolicy())
	}
	return d.GetConsumer()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func runDLQShow(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow dlq show", `Usage: furrow dlq show DL [flags]

Shows dead letter DL (its sequence in DEADLETTER, from 'furrow dlq ls'):
who parked it and why, after how many attempts, its status, and the
parked event decoded.
`)
	pos, err := o.parse(fs, args, 1, 1, "DL")
	if err != nil {
		return err
	}
	seq, err := seqArg("dead letter", pos[0])
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.GetDeadLetter(ctx, &adminv1.GetDeadLetterRequest{Sequence: seq})
	if err != nil {
		return o.callErr(fmt.Sprintf("dead letter %d", seq), err)
	}
	if o.json {
		return o.printJSON(res)
	}
	printDeadLetter(o, res.GetDeadLetter())
	return nil
}

func printDeadLetter(o *opEnv, d *adminv1.DeadLetter) {
	status := d.GetStatus()
	if d.GetResolvedAt() != nil {
		status += " at " + stamp(d.GetResolvedAt())
	}
	tw := o.table()
	for _, kv := range [][2]string{
		{"Dead letter", fmt.Sprintf("%d (parked %s, %s)", d.GetSequence(), stamp(d.GetParkedAt()), ago(d.GetParkedAt()))},
		{"Parked by", fmt.Sprintf("%s %s", d.GetKind(), consumerName(d))},
		{"Source", fmt.Sprintf("%s:%d on %s", d.GetSourceStream(), d.GetSourceSequence(), d.GetSourceSubject())},
		{"Attempts", fmt.Sprint(d.GetAttempts())},
		{"Reason", d.GetReason()},
		{"Status", status},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	_ = tw.Flush()
	if d.GetEvent() != nil {
		fmt.Fprintln(o.stdout, "\nEvent:")
		printEvent(o, d.GetEvent())
	}
	if d.GetStatus() == "parked" {
		fmt.Fprintf(o.stdout, "\nAfter fixing the cause: furrow dlq redrive %d\n", d.GetSequence())
	}
}

func runDLQRedrive(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow dlq redrive", `Usage: furrow dlq redrive DL [flags]

Hands dead letter DL's event to the handler or projection that parked it,
once, and on success marks the dead letter resolved.

  - a projection stopped at the event retries it (and carries on);
  - a projection that skipped it applies it now, out of order, once;
  - a handler is called with it (handlers are idempotent by event id).

If it fails again, nothing changes: the command says why and exits 1.
`)
	pos, err := o.parse(fs, args, 1, 1, "DL")
	if err != nil {
		return err
	}
	seq, err := seqArg("dead letter", pos[0])
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.RedriveDeadLetter(ctx, &adminv1.RedriveDeadLetterRequest{Sequence: seq})
	if err != nil {
		return o.callErr(fmt.Sprintf("redrive dead letter %d", seq), err)
	}
	if o.json {
		return o.printJSON(res)
	}
	d := res.GetDeadLetter()
	fmt.Fprintf(o.stdout, "dead letter %d: %s:%d %s by %s %s; resolved\n", d.GetSequence(), d.GetSourceStream(), d.GetSourceSequence(),
		res.GetOutcome(), d.GetKind(), d.GetConsumer())
	return nil
}
