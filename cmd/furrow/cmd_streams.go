package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

const streamsUsage = `Usage: furrow streams <command> [flags]

Inspect Furrow's JetStream streams (one per service, plus DEADLETTER).
`

var streamsCommands = []opCommand{
	{"ls", "list streams: messages, size, first and last sequence and time", runStreamsLs},
	{"info", "describe a stream: configuration, state, busiest subjects, consumers", runStreamsInfo},
}

func runStreams(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return runGroup(ctx, "streams", streamsUsage, streamsCommands, args, stdout, stderr, getenv)
}

func runStreamsLs(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow streams ls", `Usage: furrow streams ls [flags]

Lists every stream with its message count, size and sequence range.
`)
	if _, err := o.parse(fs, args, 0, 0, ""); err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.ListStreams(ctx, &adminv1.ListStreamsRequest{})
	if err != nil {
		return o.callErr("list streams", err)
	}
	if o.json {
		return o.printJSON(res)
	}
	tw := o.table()
	fmt.Fprintln(tw, "STREAM\tSUBJECTS\tMESSAGES\tBYTES\tFIRST\tLAST\tLAST STORED\tCONSUMERS")
	for _, s := range res.GetStreams() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\n", s.GetName(), strings.Join(s.GetSubjects(), ","),
			count(s.GetMessages()), bytesHuman(s.GetBytes()), s.GetFirstSequence(), s.GetLastSequence(), ago(s.GetLastTime()), s.GetConsumerCount())
	}
	return tw.Flush()
}

func runStreamsInfo(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow streams info", `Usage: furrow streams info STREAM [flags]

Describes one stream: its configuration (storage, replicas, duplicate
window, delete/purge denied), its state, its busiest subjects and its
consumers with their progress.
`)
	subjects := fs.Int("subjects", 10, "show this many subjects with the most messages (0: none)")
	pos, err := o.parse(fs, args, 1, 1, "STREAM")
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.GetStream(ctx, &adminv1.GetStreamRequest{Stream: pos[0], SubjectsLimit: int32(*subjects)})
	if err != nil {
		return o.callErr("stream "+pos[0], err)
	}
	if o.json {
		return o.printJSON(res)
	}
	s := res.GetStream()
	tw := o.table()
	for _, kv := range [][2]string{
		{"Stream", s.GetName()},
		{"Subjects", strings.Join(s.GetSubjects(), ", ")},
		{"Storage", fmt.Sprintf("%s, %d replica(s)", s.GetStorage(), s.GetReplicas())},
		{"Duplicate window", dur(s.GetDuplicateWindow())},
		{"Deny delete/purge", fmt.Sprintf("%t/%t", s.GetDenyDelete(), s.GetDenyPurge())},
		{"Direct get, atomic batch", fmt.Sprintf("%t, %t", s.GetAllowDirect(), s.GetAllowAtomicPublish())},
		{"Created", stamp(s.GetCreatedAt())},
		{"Messages", fmt.Sprintf("%s (%s)", count(s.GetMessages()), bytesHuman(s.GetBytes()))},
		{"Sequences", fmt.Sprintf("%d … %d", s.GetFirstSequence(), s.GetLastSequence())},
		{"First stored", stamp(s.GetFirstTime())},
		{"Last stored", fmt.Sprintf("%s (%s)", stamp(s.GetLastTime()), ago(s.GetLastTime()))},
		{"Distinct subjects", count(s.GetSubjectCount())},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.GetSubjects()) > 0 {
		fmt.Fprintln(o.stdout, "\nBusiest subjects:")
		tw = o.table()
		fmt.Fprintln(tw, "  SUBJECT\tMESSAGES")
		for _, sc := range res.GetSubjects() {
			fmt.Fprintf(tw, "  %s\t%s\n", sc.GetSubject(), count(sc.GetMessages()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(o.stdout, "\nConsumers:")
	if len(res.GetConsumers()) == 0 {
		fmt.Fprintln(o.stdout, "  (none)")
		return nil
	}
	tw = o.table()
	fmt.Fprintln(tw, "  NAME\tFILTER\tACK FLOOR\tPENDING\tACK PENDING\tREDELIVERED")
	for _, cs := range res.GetConsumers() {
		filter := strings.Join(cs.GetFilterSubjects(), ",")
		if filter == "" {
			filter = "(all)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\t%d\n", cs.GetName(), filter, cs.GetAckFloor(), count(cs.GetPending()), cs.GetAckPending(), cs.GetRedelivered())
	}
	return tw.Flush()
}

// bytesHuman renders a size: 512 B, 1.5 KiB, 3.2 MiB.
func bytesHuman(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
