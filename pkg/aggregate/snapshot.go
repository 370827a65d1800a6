package aggregate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/snapshot"
)

// Snapshots
//
// An aggregate with a long history costs a read and a decode per event to
// load when it is not cached (a process's first load of it, a replica that
// has not seen it, an aggregate evicted from the cache). A Loader given a
// SnapshotStore and a Kind with a Schema saves the aggregate now and then,
// every SnapshotEvery events, and starts a load that misses the cache from
// its snapshot: it reads the snapshot and only the events after it.
//
// A snapshot is never trusted. It is written in the background, after a
// load, from a copy: never on a command's path, and never the guarantee
// (an append still expects the version the command decided on, so a
// snapshot that was somehow wrong costs a conflict, not a wrong event).
// Reading one, the Loader ignores it, and replays the aggregate whole,
// unless all of this holds: its checksum matches; it is of this format,
// this kind and this aggregate; its schema version is the kind's current
// one (an aggregate whose state changed shape bumps it, and old snapshots
// are simply not used); the aggregate's own decoder accepts every byte of
// it; and the stream still holds, at the sequence the snapshot covers, the
// aggregate's event with the id the snapshot names (a recreated stream, or
// one restored from a backup older than the snapshot, does not).

// Schema says how a kind of aggregate is saved in a snapshot.
type Schema[A any] struct {
	// Version is the schema's version, stored in each snapshot. Bump it
	// whenever what Encode writes changes; snapshots of any other version
	// are ignored.
	Version uint64
	// Encode writes the aggregate's state to w. An error (a state the
	// schema cannot hold) means no snapshot is written.
	Encode func(a A, w *snapshot.Writer) error
	// Decode reads what Encode wrote back into the aggregate id; r
	// reports a failure (Decode may also call r.Fail).
	Decode func(id string, r *snapshot.Reader) A
}

// SnapshotStore keeps one snapshot per key; KVSnapshots implements it over
// a JetStream key-value bucket.
type SnapshotStore interface {
	// GetSnapshot returns the snapshot under key, or ErrNoSnapshot.
	GetSnapshot(ctx context.Context, key string) ([]byte, error)
	// PutSnapshot replaces the snapshot under key.
	PutSnapshot(ctx context.Context, key string, data []byte) error
}

// ErrNoSnapshot means there is no snapshot under the key.
var ErrNoSnapshot = errors.New("aggregate: no snapshot")

// DefaultSnapshotEvery is how many events an aggregate gains between
// snapshots unless Options say otherwise. A load from a snapshot reads
// half as many events on average: at 100, an uncached farmer of 2,000
// entries loads some twenty times faster than by replay (BenchmarkFarmerLoad).
const DefaultSnapshotEvery = 100

// snapshotShare: an aggregate of n events is saved again after at least
// n/snapshotShare more. A snapshot's size grows with its aggregate, so a
// fixed interval would make each event of a long history cost ever more
// snapshot bytes written; this keeps that cost per event bounded, and the
// tail a load reads within 1/snapshotShare of the history.
const snapshotShare = 20

// snapshotWriteTimeout bounds one background snapshot write.
const snapshotWriteTimeout = 10 * time.Second

// snapshotMagic starts every snapshot this package writes; its last byte
// is the envelope's format.
var snapshotMagic = []byte("FURROWS\x01")

// castagnoli is the CRC a snapshot ends with.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snap is a decoded snapshot.
type snap[A any] struct {
	agg     A
	seen    *eventstore.Requests
	version uint64
	last    anchor
	events  int
}

// anchor names the last event a snapshot holds by its id and the time the
// server stored it: the stream must hold that very event at the sequence
// the snapshot covers. The id alone would not do (ids derive from
// idempotency keys, so a stream rebuilt by replaying the same requests
// repeats them); the server's timestamp differs in any other history.
type anchor struct {
	id string
	at int64 // stored at, Unix nanoseconds
}

func anchorOf(ev eventstore.Recorded) anchor {
	return anchor{id: ev.ID, at: ev.Time.UnixNano()}
}

// snapshotKey is where kind keeps aggregate id's snapshot.
func snapshotKey(kind, id string) string { return kind + "." + id }

// encodeSnapshot makes the envelope: magic, kind, id, schema version,
// the sequence covered and the anchor of the event there, the number of
// events folded, the idempotency keys, the state, and a CRC-32C of all
// that.
func encodeSnapshot[A Root[A]](kind Kind[A], id string, s snap[A]) ([]byte, error) {
	var state snapshot.Writer
	if err := kind.Snapshot.Encode(s.agg, &state); err != nil {
		return nil, err
	}
	var w snapshot.Writer
	w.String(kind.Name)
	w.String(id)
	w.Uint(kind.Snapshot.Version)
	w.Uint(s.version)
	w.String(s.last.id)
	w.Int(s.last.at)
	w.Uint(uint64(s.events))
	s.seen.EncodeSnapshot(&w)
	w.Bytes(state.Data())
	out := append(append([]byte{}, snapshotMagic...), w.Data()...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// decodeSnapshot checks and decodes an envelope encodeSnapshot made for
// aggregate id of kind. It does not check the stream (Load does).
func decodeSnapshot[A Root[A]](kind Kind[A], id string, data []byte) (s snap[A], err error) {
	defer func() {
		// The decoders run on bytes from outside the process: whatever
		// they do with them, a snapshot that makes one panic is refused.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panicked: %v", snapshot.ErrCorrupt, p)
		}
	}()
	if len(data) < len(snapshotMagic)+4 || string(data[:len(snapshotMagic)]) != string(snapshotMagic) {
		return s, fmt.Errorf("%w: not a snapshot of this format", snapshot.ErrCorrupt)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return s, fmt.Errorf("%w: checksum mismatch", snapshot.ErrCorrupt)
	}
	r := snapshot.NewReader(body[len(snapshotMagic):])
	gotKind, gotID, schema := r.Text(), r.Text(), r.Uint()
	if err := r.Err(); err != nil {
		return s, err
	}
	switch {
	case gotKind != kind.Name || gotID != id:
		return s, fmt.Errorf("%w: snapshot of %s %s, not of %s %s", snapshot.ErrCorrupt, gotKind, gotID, kind.Name, id)
	case schema != kind.Snapshot.Version:
		return s, fmt.Errorf("%w: schema version %d, want %d", errOldSchema, schema, kind.Snapshot.Version)
	}
	s.version, s.last.id, s.last.at = r.Uint(), r.Text(), r.Int()
	events := r.Uint()
	s.seen = eventstore.DecodeRequests(r)
	state := r.Bytes()
	if err := r.Done(); err != nil {
		return s, err
	}
	if s.version == 0 || s.last.id == "" || events == 0 || events > s.version {
		return s, fmt.Errorf("%w: covers %d events up to sequence %d (event %q)", snapshot.ErrCorrupt, events, s.version, s.last.id)
	}
	s.events = int(events)
	sr := snapshot.NewReader(state)
	s.agg = kind.Snapshot.Decode(id, sr)
	if err := sr.Done(); err != nil {
		return s, err
	}
	if s.agg.Version() != s.version {
		return s, fmt.Errorf("%w: state at version %d, envelope at %d", snapshot.ErrCorrupt, s.agg.Version(), s.version)
	}
	return s, nil
}

// errOldSchema: a snapshot of another schema version, e.g. written before
// an upgrade. Not damage, just not usable.
var errOldSchema = errors.New("aggregate: snapshot of another schema version")

// readSnapshot returns aggregate id's snapshot if it has a usable one.
// Failing to read one never fails a load: it replays the aggregate whole.
func (l *Loader[A]) readSnapshot(ctx context.Context, id string) (snap[A], bool) {
	data, err := l.snaps.GetSnapshot(ctx, snapshotKey(l.kind.Name, id))
	if errors.Is(err, ErrNoSnapshot) {
		return snap[A]{}, false
	}
	if errors.Is(err, snapshot.ErrCorrupt) {
		l.rejectSnapshot(ctx, id, err)
		return snap[A]{}, false
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.WarnContext(ctx, "aggregate snapshot unreadable; replaying the aggregate", "kind", l.kind.Name, "id", id, "error", err)
		}
		return snap[A]{}, false
	}
	s, err := decodeSnapshot(l.kind, id, data)
	if err != nil {
		l.rejectSnapshot(ctx, id, err)
		return snap[A]{}, false
	}
	return s, true
}

// rejectSnapshot counts and logs a snapshot Load will not use.
func (l *Loader[A]) rejectSnapshot(ctx context.Context, id string, err error) {
	l.mu.Lock()
	l.stats.SnapshotsRejected++
	l.mu.Unlock()
	level := l.log.WarnContext
	if errors.Is(err, errOldSchema) {
		level = l.log.InfoContext // expected once per aggregate after an upgrade
	}
	level(ctx, "aggregate snapshot ignored; replaying the aggregate", "kind", l.kind.Name, "id", id, "error", err)
}

// snapshotDue reports whether an aggregate of events events, whose last
// snapshot covered snapped of them, should be saved again, and if so
// claims the writer (one write in flight per Loader; a snapshot due while
// another is written waits for a later load).
func (l *Loader[A]) snapshotDue(events, snapped int, last anchor) bool {
	if l.snaps == nil || last.id == "" || events-snapped < max(l.snapshotEvery, events/snapshotShare) {
		return false
	}
	return l.writing.CompareAndSwap(false, true)
}

// writeSnapshot saves s (a private copy) in the background.
func (l *Loader[A]) writeSnapshot(id string, s snap[A]) {
	go func() {
		defer l.writing.Store(false)
		data, err := encodeSnapshot(l.kind, id, s)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), snapshotWriteTimeout)
			err = l.snaps.PutSnapshot(ctx, snapshotKey(l.kind.Name, id), data)
			cancel()
		}
		l.mu.Lock()
		if err != nil {
			l.stats.SnapshotErrors++
		} else {
			l.stats.SnapshotsWritten++
		}
		l.mu.Unlock()
		if err != nil {
			l.log.Warn("aggregate snapshot not written", "kind", l.kind.Name, "id", id, "version", s.version, "error", err)
		}
	}()
}
