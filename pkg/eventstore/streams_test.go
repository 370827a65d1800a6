package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestVerifyStreamNamesDrift creates streams that lost one guarantee each,
// the way a NATS user with stream rights could leave them, and checks a
// service's start-up check refuses each with ErrDrift naming the setting.
func TestVerifyStreamNamesDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := natstest.Embedded(t).JetStream(t)
	spec := func(name string) eventstore.StreamSpec {
		return eventstore.StreamSpec{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Replicas: 1}
	}
	for _, tc := range []struct {
		name  string
		drift func(*jetstream.StreamConfig)
		// want is the problem VerifyStream must name.
		want string
		// replicas is what the verifying service requires (default 1).
		replicas int
	}{
		{name: "PURGEABLE", drift: func(c *jetstream.StreamConfig) { c.DenyPurge = false }, want: "deny_purge is false, want true"},
		{name: "DELETABLE", drift: func(c *jetstream.StreamConfig) { c.DenyDelete = false }, want: "deny_delete is false, want true"},
		{name: "CAPPED", drift: func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 2, jetstream.DiscardOld }, want: "max_msgs is 2, want unlimited"},
		{name: "DISCARDOLD", drift: func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld }, want: "discard is DiscardOld, want DiscardNew"},
		{name: "AGED", drift: func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }, want: "max_age is 1h0m0s, want unlimited"},
		{name: "TTL", drift: func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true }, want: "allow_msg_ttl is true"},
		{name: "ROLLUP", drift: func(c *jetstream.StreamConfig) { c.AllowRollup, c.DenyPurge = true, false }, want: "allow_rollup_hdrs is true"},
		{name: "MEMORY", drift: func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }, want: "storage is Memory, want File"},
		{name: "NARROW", drift: func(c *jetstream.StreamConfig) { c.Subjects = []string{"narrow.only"} }, want: "subjects lack narrow.>"},
		{name: "NODIRECT", drift: func(c *jetstream.StreamConfig) { c.AllowDirect = false }, want: "allow_direct is false"},
		{name: "NOBATCH", drift: func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false }, want: "allow_atomic is false"},
		{name: "SINGLE", replicas: 3, want: "num_replicas is 1, want at least 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := spec(tc.name).Config()
			if tc.drift != nil {
				tc.drift(&cfg)
			}
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			want := spec(tc.name)
			if tc.replicas != 0 {
				want.Replicas = tc.replicas
			}
			err := eventstore.VerifyStream(ctx, js, want.Config())
			if !errors.Is(err, eventstore.ErrDrift) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyStream = %v; want ErrDrift naming %q", err, tc.want)
			}
		})
	}

	t.Run("sealed", func(t *testing.T) {
		cfg := spec("SEALED").Config()
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		cfg.Sealed = true
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := eventstore.VerifyStream(ctx, js, spec("SEALED").Config()); !errors.Is(err, eventstore.ErrDrift) || !strings.Contains(err.Error(), "sealed is true") {
			t.Fatalf("VerifyStream = %v; want ErrDrift naming sealed", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		err := eventstore.VerifyStream(ctx, js, spec("NOWHERE").Config())
		if !errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, eventstore.ErrDrift) {
			t.Fatalf("VerifyStream of a missing stream = %v; want ErrStreamNotFound (wait for the admin), not drift", err)
		}
	})
	t.Run("as specified", func(t *testing.T) {
		if err := eventstore.EnsureStreams(ctx, js, spec("GOOD")); err != nil {
			t.Fatal(err)
		}
		if err := eventstore.VerifyStream(ctx, js, spec("GOOD").Config()); err != nil {
			t.Fatalf("VerifyStream of a stream made to spec: %v", err)
		}
		// A stream read by name only (another service's) needs no subjects.
		if err := eventstore.VerifyStream(ctx, js, eventstore.StreamSpec{Name: "GOOD", Replicas: 1}.Config()); err != nil {
			t.Fatalf("VerifyStream by name: %v", err)
		}
	})
}

// TestApplyStream checks the admin step: it creates, leaves a stream
// as it is on a second run, and repairs every setting the server lets it
// repair in place, listing each.
func TestApplyStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := natstest.Embedded(t).JetStream(t)
	want := eventstore.StreamSpec{Name: "APPLY", Subjects: []string{"apply.>"}, Replicas: 1}.Config()

	res, err := eventstore.ApplyStream(ctx, js, want, eventstore.ApplyOptions{})
	if err != nil || res.Change != eventstore.Created {
		t.Fatalf("first apply = %+v, %v; want created", res, err)
	}
	res, err = eventstore.ApplyStream(ctx, js, want, eventstore.ApplyOptions{})
	if err != nil || res.Change != eventstore.Unchanged || len(res.Fields) != 0 {
		t.Fatalf("second apply = %+v, %v; want unchanged", res, err)
	}

	// Drift a stream can be repaired from: deletes and purges allowed
	// (a new stream), a limit that drops events, rollups.
	drifted := eventstore.StreamSpec{Name: "REPAIR", Subjects: []string{"repair.>"}, Replicas: 1}.Config()
	drifted.DenyDelete, drifted.DenyPurge = false, false
	drifted.MaxMsgs, drifted.Discard = 2, jetstream.DiscardOld
	drifted.AllowRollup = true
	if _, err := js.CreateStream(ctx, drifted); err != nil {
		t.Fatal(err)
	}
	want = eventstore.StreamSpec{Name: "REPAIR", Subjects: []string{"repair.>"}, Replicas: 1}.Config()
	res, err = eventstore.ApplyStream(ctx, js, want, eventstore.ApplyOptions{})
	if err != nil || res.Change != eventstore.Updated {
		t.Fatalf("apply to a drifted stream = %+v, %v; want updated", res, err)
	}
	wantFields := []string{
		"allow_rollup_hdrs: true → false",
		"deny_delete: false → true",
		"deny_purge: false → true",
		`discard: "old" → "new"`,
		"max_msgs: 2 → -1",
	}
	if diff := cmp.Diff(wantFields, res.Fields); diff != "" {
		t.Errorf("fields changed (-want +got):\n%s", diff)
	}
	if err := eventstore.VerifyStream(ctx, js, want); err != nil {
		t.Errorf("VerifyStream after the repair: %v", err)
	}
}

// TestApplyStreamRefuses checks what the admin step will not do: what the
// server cannot change in place, and what loses copies or subjects unless
// allowed.
func TestApplyStreamRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := natstest.Embedded(t).JetStream(t)
	spec := func(name string) jetstream.StreamConfig {
		return eventstore.StreamSpec{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Replicas: 1}.Config()
	}
	sealed := spec("SEALED")
	if _, err := js.CreateStream(ctx, sealed); err != nil {
		t.Fatal(err)
	}
	sealed.Sealed = true
	if _, err := js.UpdateStream(ctx, sealed); err != nil {
		t.Fatal(err)
	}
	ttl := spec("TTL")
	ttl.AllowMsgTTL = true
	if _, err := js.CreateStream(ctx, ttl); err != nil {
		t.Fatal(err)
	}
	wide := spec("WIDE")
	wide.Subjects = append(wide.Subjects, "extra.>")
	if _, err := js.CreateStream(ctx, wide); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
	}{
		{"SEALED", "sealed: the stream is sealed and cannot be unsealed"},
		{"TTL", "allow_msg_ttl: message TTLs are on and cannot be turned off"},
		{"WIDE", "subjects: would remove extra.>"},
	} {
		res, err := eventstore.ApplyStream(ctx, js, spec(tc.name), eventstore.ApplyOptions{})
		if !errors.Is(err, eventstore.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply to %s = %+v, %v; want ErrRefused naming %q", tc.name, res, err, tc.want)
		}
	}
	res, err := eventstore.ApplyStream(ctx, js, spec("WIDE"), eventstore.ApplyOptions{AllowSubjectRemoval: true})
	if err != nil || res.Change != eventstore.Updated || !slicesContains(res.Fields, `subjects: ["wide.>","extra.>"] → ["wide.>"]`) {
		t.Errorf("apply to WIDE allowing subject removal = %+v, %v; want the subject dropped", res, err)
	}

	// Replicas: a plan, since one server holds one replica.
	have := spec("R3")
	have.Replicas = 3
	want := spec("R3")
	if _, err := eventstore.PlanStreamUpdate(have, want, eventstore.ApplyOptions{}); !errors.Is(err, eventstore.ErrRefused) ||
		!strings.Contains(err.Error(), "num_replicas: would lower 3 → 1") {
		t.Errorf("plan R3 → R1 = %v; want ErrRefused naming num_replicas", err)
	}
	next, err := eventstore.PlanStreamUpdate(have, want, eventstore.ApplyOptions{AllowReplicaDecrease: true})
	if err != nil || next.Replicas != 1 {
		t.Errorf("plan R3 → R1 allowed = %d replicas, %v; want 1", next.Replicas, err)
	}
	have.Replicas = 1
	want.Replicas = 3
	if next, err := eventstore.PlanStreamUpdate(have, want, eventstore.ApplyOptions{}); err != nil || next.Replicas != 3 {
		t.Errorf("plan R1 → R3 = %d replicas, %v; want 3", next.Replicas, err)
	}
}

// TestCheckStream covers the settings an embedded server cannot be given
// easily: asynchronous persistence, sources and republishing.
func TestCheckStream(t *testing.T) {
	t.Parallel()
	want := eventstore.StreamSpec{Name: "S", Subjects: []string{"s.>"}, Replicas: 3}.Config()
	if got := eventstore.CheckStream(want, want); len(got) != 0 {
		t.Errorf("CheckStream of the spec itself = %v; want nothing", got)
	}
	have := want
	have.Replicas = 5
	if got := eventstore.CheckStream(have, want); len(got) != 0 {
		t.Errorf("CheckStream with more replicas than needed = %v; want nothing", got)
	}
	have = want
	have.PersistMode = jetstream.AsyncPersistMode
	have.Sources = []*jetstream.StreamSource{{Name: "OTHER"}}
	have.RePublish = &jetstream.RePublish{Source: ">", Destination: "copy.>"}
	have.NoAck = true
	have.Retention = jetstream.InterestPolicy
	got := strings.Join(eventstore.CheckStream(have, want), "\n")
	for _, w := range []string{"persist_mode is", "sources are set", "republish is set", "no_ack is true", "retention is Interest"} {
		if !strings.Contains(got, w) {
			t.Errorf("CheckStream lacks %q:\n%s", w, got)
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestReflectedAnswerIsNotAnEvent reproduces an injection no permission
// can stop: any user of the account asks for a direct get of a message it
// wrote in its own stream, with a reply subject inside another stream, and
// the answer (the message, headers and all, plus the server's Nats-Stream
// and Nats-Sequence headers) is stored there. On a cluster that happens
// whenever the answer crosses a route. Reading that stream must not take
// it for an event, whether it forges a new one or replays a genuine one
// under another aggregate.
func TestReflectedAnswerIsNotAnEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a 3-node cluster: a single server does not store its own answers")
	}
	t.Parallel()
	ctx := context.Background()
	srv := natstest.ClusterWith(t, natstest.Options{
		Config:         "accounts { APP { jetstream: enabled, users: [ { user: app, password: app } ] } }",
		ConnectOptions: []nats.Option{nats.UserInfo("app", "app")},
	})
	js := srv.JetStream(t)
	if err := eventstore.EnsureStreams(ctx, js,
		eventstore.StreamSpec{Name: "OWN", Subjects: []string{"own.>"}, Replicas: 3},
		// A short duplicate window: a replay beyond it is not de-duplicated.
		eventstore.StreamSpec{Name: "VICTIM", Subjects: []string{"victim.>"}, Replicas: 3, DuplicateWindow: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	// A genuine event of the victim (appended without an expected version,
	// so nothing but its id ties it to its subject)...
	if _, err := store.Append(ctx, eventstore.AppendRequest{Stream: "VICTIM", Aggregate: "victim.acct.A1.>", Expect: eventstore.ExpectAny,
		Events: []eventstore.Event{ev("victim.acct.A1.opened", "genuine")}}); err != nil {
		t.Fatal(err)
	}
	// ...and the attacker's, published in its own stream with a complete
	// Furrow envelope claiming to be one of the victim's.
	forged := nats.NewMsg("own.x.X1.crafted")
	forged.Data = []byte("payout account: the attacker's")
	forged.Header.Set(eventstore.HeaderEventType, "test.v1.AccountChanged")
	forged.Header.Set(eventstore.HeaderEventID, "forged-1")
	crafted, err := js.PublishMsg(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the victim's duplicate window
	nc := srv.Connect(t)
	victim, err := js.Stream(ctx, "VICTIM")
	if err != nil {
		t.Fatal(err)
	}
	// reflect asks until the victim stored an answer under into.
	reflect := func(stream string, seq uint64, into string) {
		t.Helper()
		for attempt := 0; attempt < 50; attempt++ {
			if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, into, []byte(fmt.Sprintf(`{"seq":%d}`, seq))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if _, err := victim.GetLastMsgForSubject(ctx, into); err == nil {
				return
			}
		}
		t.Skipf("the cluster never stored a reflected answer on %s: nothing to guard against here", into)
	}
	reflect("OWN", crafted.Sequence, "victim.acct.A1.account_changed") // a forged event of A1
	reflect("VICTIM", 1, "victim.acct.A2.opened")                      // a genuine event replayed under A2
	for _, filter := range []string{"victim.acct.A1.>", "victim.acct.A2.>"} {
		evs, err := store.Load(ctx, "VICTIM", filter, 0)
		if !errors.Is(err, eventstore.ErrNotAnEvent) {
			var got []string
			for _, e := range evs {
				got = append(got, fmt.Sprintf("%s %s %q", e.Subject, e.ID, e.Data))
			}
			t.Errorf("Load %s = %v, %v; want ErrNotAnEvent for the reflected answer", filter, got, err)
		}
	}
}
