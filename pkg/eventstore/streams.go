package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Who may change a stream: only an admin identity creates and updates
// Furrow's streams (`furrow admin streams apply`, or `furrow dev` for its
// embedded server) with ApplyStream. A production service never does: its
// NATS user may not, and at start it calls VerifyStream and refuses to run
// on a stream that could lose, rewrite or expire events.

var (
	// ErrDrift means a stream or consumer exists but lacks a setting Furrow
	// depends on. Waiting does not fix it: an admin does, with
	// `furrow admin streams apply`.
	ErrDrift = errors.New("eventstore: configuration drift")
	// ErrRefused means ApplyStream will not make a change that could lose
	// durability or events without an explicit ApplyOptions permission, or
	// cannot make it at all (the server refuses it in place).
	ErrRefused = errors.New("eventstore: change refused")
)

// StreamSpec describes a service's event stream.
type StreamSpec struct {
	// Name is the stream name, e.g. "PROCUREMENT".
	Name string
	// Subjects are the stream's subjects, e.g. "procurement.>".
	Subjects []string
	// Replicas is 1 for a single server and 3 for a production cluster.
	Replicas int
	// Description is shown by `nats stream ls`; a default names the stream.
	Description string
	// DuplicateWindow is how long the server de-duplicates Nats-Msg-Id;
	// zero keeps the server default (2 minutes).
	DuplicateWindow time.Duration
}

// Config is the JetStream configuration Furrow insists on for an event
// stream: file storage, nothing ever deleted, purged, expired or dropped
// by a limit, direct gets for loading aggregates, atomic batches for
// multi-event appends.
func (s StreamSpec) Config() jetstream.StreamConfig {
	replicas := s.Replicas
	if replicas == 0 {
		replicas = 1
	}
	desc := s.Description
	if desc == "" {
		desc = "Furrow events, source of truth: " + strings.Join(s.Subjects, ", ")
	}
	return jetstream.StreamConfig{
		Name:               s.Name,
		Description:        desc,
		Subjects:           s.Subjects,
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		Replicas:           replicas,
		Duplicates:         s.DuplicateWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

// EnsureStreams applies each spec with ApplyStream's default options:
// tests and benchmarks use it to set up their streams as an admin would.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, specs ...StreamSpec) error {
	for _, spec := range specs {
		if _, err := ApplyStream(ctx, js, spec.Config(), ApplyOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// Change says what applying a configuration did.
type Change string

// Changes ApplyStream (and the consumer equivalent in package wmjs) report.
const (
	Created   Change = "created"
	Updated   Change = "updated"
	Unchanged Change = "unchanged"
)

// ApplyOptions permit the changes ApplyStream refuses by default.
type ApplyOptions struct {
	// AllowReplicaDecrease lets it lower an existing stream's replicas
	// (fewer copies of the source of truth).
	AllowReplicaDecrease bool
	// AllowSubjectRemoval lets it drop subjects an existing stream has and
	// the configuration lacks (publishes on them would then fail).
	AllowSubjectRemoval bool
}

// ApplyResult is what ApplyStream did to one stream.
type ApplyResult struct {
	Name   string
	Change Change
	// Fields are the settings it changed, e.g. "deny_purge: false → true"
	// (JetStream's JSON names, as `nats stream info --json` shows them).
	Fields []string
}

// ApplyStream creates the stream want describes, or brings an existing
// one to it: it is the admin's migration step and is idempotent (a second
// run reports Unchanged). It refuses (ErrRefused) to lower replicas or
// drop subjects unless opts allow it, and to touch a stream whose storage,
// seal, message TTLs, counters, schedules, persistence mode or mirror
// differ, which the server cannot change in place. Settings want does not
// speak about (placement, compression, consumer limits, metadata) are kept.
func ApplyStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, opts ApplyOptions) (ApplyResult, error) {
	res := ApplyResult{Name: want.Name}
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateStream(ctx, want); err == nil {
			res.Change = Created
			return res, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return res, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		st, err = js.Stream(ctx, want.Name) // created meanwhile: bring it to spec
	}
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	next, err := PlanStreamUpdate(have, want, opts)
	if err != nil {
		return res, err
	}
	res.Fields = configChanges(have, next)
	if len(res.Fields) == 0 {
		res.Change = Unchanged
		return res, nil
	}
	if _, err := js.UpdateStream(ctx, next); err != nil {
		return res, fmt.Errorf("update stream %s (%s): %w", want.Name, strings.Join(res.Fields, "; "), err)
	}
	res.Change = Updated
	return res, nil
}

// PlanStreamUpdate returns the configuration ApplyStream would give the
// existing stream have to meet want, or why it refuses (ErrRefused).
func PlanStreamUpdate(have, want jetstream.StreamConfig, opts ApplyOptions) (jetstream.StreamConfig, error) {
	var refused []string
	inPlace := func(field string, differs bool, why string) {
		if differs {
			refused = append(refused, field+": "+why)
		}
	}
	inPlace("storage", have.Storage != want.Storage,
		fmt.Sprintf("is %s, want %s; the server cannot change it in place (restore into a new stream)", have.Storage, want.Storage))
	inPlace("sealed", have.Sealed, "the stream is sealed and cannot be unsealed (restore into a new stream)")
	inPlace("allow_msg_ttl", have.AllowMsgTTL && !want.AllowMsgTTL, "message TTLs are on and cannot be turned off")
	inPlace("allow_msg_counter", have.AllowMsgCounter != want.AllowMsgCounter, "cannot be changed in place")
	inPlace("allow_msg_schedules", have.AllowMsgSchedules && !want.AllowMsgSchedules, "message schedules are on and cannot be turned off")
	inPlace("persist_mode", have.PersistMode != want.PersistMode,
		fmt.Sprintf("is %s, want %s; cannot be changed in place", have.PersistMode, want.PersistMode))
	inPlace("mirror", have.Mirror != nil, "the stream is a mirror, not an event stream")
	if have.Replicas > want.Replicas && !opts.AllowReplicaDecrease {
		refused = append(refused, fmt.Sprintf("num_replicas: would lower %d → %d (fewer copies of the source of truth); allow it explicitly", have.Replicas, want.Replicas))
	}
	var dropped []string
	for _, s := range have.Subjects {
		if !slices.Contains(want.Subjects, s) {
			dropped = append(dropped, s)
		}
	}
	if len(dropped) > 0 && !opts.AllowSubjectRemoval {
		refused = append(refused, fmt.Sprintf("subjects: would remove %s (publishes on them would fail); allow it explicitly", strings.Join(dropped, ", ")))
	}
	if len(refused) > 0 {
		return have, fmt.Errorf("%w: stream %s: %s", ErrRefused, have.Name, strings.Join(refused, "; "))
	}

	next := have
	next.Description = want.Description
	next.Subjects = slices.Clone(want.Subjects)
	next.Retention = want.Retention
	next.Discard = want.Discard
	next.DiscardNewPerSubject = want.DiscardNewPerSubject
	next.MaxMsgs = limit(have.MaxMsgs, want.MaxMsgs)
	next.MaxBytes = limit(have.MaxBytes, want.MaxBytes)
	next.MaxAge = limit(have.MaxAge, want.MaxAge)
	next.MaxMsgsPerSubject = limit(have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	next.MaxMsgSize = limit(have.MaxMsgSize, want.MaxMsgSize)
	next.Replicas = want.Replicas
	if want.Duplicates > 0 {
		next.Duplicates = want.Duplicates
	}
	next.NoAck = want.NoAck
	next.DenyDelete = want.DenyDelete || have.DenyDelete // the server never lifts a denial
	next.DenyPurge = want.DenyPurge || have.DenyPurge
	next.AllowRollup = want.AllowRollup
	next.AllowDirect = want.AllowDirect
	next.MirrorDirect = want.MirrorDirect
	next.AllowAtomicPublish = want.AllowAtomicPublish
	next.AllowBatchPublish = want.AllowBatchPublish
	next.AllowMsgTTL = want.AllowMsgTTL
	next.SubjectDeleteMarkerTTL = want.SubjectDeleteMarkerTTL
	next.AllowMsgSchedules = want.AllowMsgSchedules
	next.Sources = want.Sources
	next.RePublish = want.RePublish
	next.SubjectTransform = want.SubjectTransform
	return next, nil
}

// limit is want's value of a limit, or have's when both mean unlimited
// (the server writes -1 where a configuration says 0).
func limit[T int32 | int64 | time.Duration](have, want T) T {
	if want <= 0 && have <= 0 {
		return have
	}
	return want
}

// configChanges lists the settings that differ between two stream
// configurations (FieldChanges), ignoring the server's own metadata.
func configChanges(a, b jetstream.StreamConfig) []string {
	a.Metadata, b.Metadata = nil, nil
	return FieldChanges(a, b)
}

// FieldChanges lists the fields that differ between two configurations of
// the same type, by their JSON names and values, sorted: "name: old → new".
// A field the JSON leaves out shows as its zero value.
func FieldChanges(a, b any) []string {
	ma, mb := jsonFields(a), jsonFields(b)
	var out []string
	for k, vb := range mb {
		if va, ok := ma[k]; !ok || va != vb {
			if !ok {
				va = zeroLike(vb)
			}
			out = append(out, fmt.Sprintf("%s: %s → %s", k, va, vb))
		}
	}
	for k, va := range ma {
		if _, ok := mb[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, va, zeroLike(va)))
		}
	}
	sort.Strings(out)
	return out
}

func jsonFields(v any) map[string]string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // subjects hold '>'
	_ = enc.Encode(v)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(buf.Bytes(), &m)
	out := make(map[string]string, len(m))
	for k, raw := range m {
		out[k] = string(raw)
	}
	return out
}

// zeroLike is the JSON zero value of v's type: what an omitted field means.
func zeroLike(v string) string {
	switch {
	case v == "true" || v == "false":
		return "false"
	case strings.HasPrefix(v, `"`):
		return `""`
	case strings.HasPrefix(v, "["), strings.HasPrefix(v, "{"), v == "null":
		return "(none)"
	default:
		return "0"
	}
}

// VerifyStream checks that the stream want names exists and keeps every
// guarantee want asks for (CheckStream). A service calls it at start
// instead of creating or updating its streams; a missing stream is
// jetstream.ErrStreamNotFound (the admin step has not run yet), a drifted
// one ErrDrift naming each setting.
func VerifyStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, want.Name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", want.Name, err)
	}
	if problems := CheckStream(st.CachedInfo().Config, want); len(problems) > 0 {
		return fmt.Errorf("%w: stream %s: %s (an admin fixes it with `furrow admin streams apply`)",
			ErrDrift, want.Name, strings.Join(problems, "; "))
	}
	return nil
}

// CheckStream lists how have falls short of what want guarantees, one
// problem per setting named by its JSON name: file storage and limits
// retention; want's subjects; at least want's replicas; deletes and purges
// denied; not sealed; no limit, TTL, rollup or delete marker that could
// drop events; no mirror, sources, republish or subject transform; sync
// persistence; direct gets and atomic batches where want uses them. An
// empty want.Subjects skips the subject check (a stream read by name only).
func CheckStream(have, want jetstream.StreamConfig) []string {
	var out []string
	bad := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	bad(have.Storage != want.Storage, "storage is %s, want %s", have.Storage, want.Storage)
	bad(have.Retention != jetstream.LimitsPolicy, "retention is %s, want limits (other policies delete acknowledged events)", have.Retention)
	for _, s := range want.Subjects {
		bad(!slices.Contains(have.Subjects, s), "subjects lack %s (have %s)", s, strings.Join(have.Subjects, ", "))
	}
	bad(have.Replicas < want.Replicas, "num_replicas is %d, want at least %d", have.Replicas, want.Replicas)
	bad(want.DenyDelete && !have.DenyDelete, "deny_delete is false, want true")
	bad(want.DenyPurge && !have.DenyPurge, "deny_purge is false, want true")
	bad(have.Sealed, "sealed is true: the stream takes no more events")
	bad(have.MaxMsgs > 0, "max_msgs is %d, want unlimited", have.MaxMsgs)
	bad(have.MaxBytes > 0, "max_bytes is %d, want unlimited", have.MaxBytes)
	bad(have.MaxAge > 0, "max_age is %s, want unlimited", have.MaxAge)
	bad(have.MaxMsgsPerSubject > 0, "max_msgs_per_subject is %d, want unlimited", have.MaxMsgsPerSubject)
	bad(have.MaxMsgSize > 0 && (want.MaxMsgSize <= 0 || have.MaxMsgSize < want.MaxMsgSize), "max_msg_size is %d, want unlimited", have.MaxMsgSize)
	bad(have.Discard != want.Discard, "discard is %s, want %s", have.Discard, want.Discard)
	bad(have.AllowMsgTTL, "allow_msg_ttl is true: events could expire")
	bad(have.SubjectDeleteMarkerTTL > 0, "subject_delete_marker_ttl is %s, want none", have.SubjectDeleteMarkerTTL)
	bad(have.AllowRollup, "allow_rollup_hdrs is true: a publish could purge a subject")
	bad(have.AllowMsgCounter, "allow_msg_counter is true")
	bad(have.AllowMsgSchedules, "allow_msg_schedules is true")
	bad(have.NoAck, "no_ack is true: appends would not be acknowledged")
	bad(have.PersistMode != jetstream.DefaultPersistMode, "persist_mode is %s, want default (acknowledged means stored)", have.PersistMode)
	bad(have.Mirror != nil, "mirror is set: the stream is a mirror")
	bad(len(have.Sources) > 0, "sources are set")
	bad(have.RePublish != nil, "republish is set")
	bad(have.SubjectTransform != nil, "subject_transform is set: stored subjects would differ from appended ones")
	bad(want.AllowDirect && !have.AllowDirect, "allow_direct is false, want true (aggregates load by direct get)")
	bad(want.AllowAtomicPublish && !have.AllowAtomicPublish, "allow_atomic is false, want true (multi-event appends are atomic batches)")
	bad(want.Duplicates > 0 && have.Duplicates < want.Duplicates, "duplicate_window is %s, want at least %s", have.Duplicates, want.Duplicates)
	return out
}
