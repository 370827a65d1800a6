package domain_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/snapshot"

	"github.com/furrow/furrow/services/procurement/domain"
)

// snapshotted is an aggregate with its snapshot schema.
type snapshotted[A interface {
	Apply(uint64, proto.Message)
	Clone() A
}] struct {
	fresh  func() A
	encode func(A, *snapshot.Writer) error
	decode func(string, *snapshot.Reader) A
	id     string
}

// testSnapshotPlusTail: at every point of the aggregate's history, its
// snapshot decoded and followed by the rest of the events equals the
// aggregate replayed whole; and every shorter or longer copy of the
// snapshot is refused.
func testSnapshotPlusTail[A interface {
	Apply(uint64, proto.Message)
	Clone() A
}](t *testing.T, s snapshotted[A], history []logged) {
	t.Helper()
	want := replayInto(s.fresh(), history)
	for k := 0; k <= len(history); k++ {
		var w snapshot.Writer
		if err := s.encode(replayInto(s.fresh(), history[:k]), &w); err != nil {
			t.Fatalf("after %d events: encode: %v", k, err)
		}
		r := snapshot.NewReader(w.Data())
		got := s.decode(s.id, r)
		if err := r.Done(); err != nil {
			t.Fatalf("after %d events: decode: %v", k, err)
		}
		if diff := cmp.Diff(replayInto(s.fresh(), history[:k]), got, aggCmp); diff != "" {
			t.Fatalf("after %d events: decoded snapshot (-replayed +decoded):\n%s", k, diff)
		}
		if diff := cmp.Diff(want, replayInto(got, history[k:]), aggCmp); diff != "" {
			t.Fatalf("snapshot after %d events + the %d after it (-full replay +snapshot and tail):\n%s", k, len(history)-k, diff)
		}
		if k == len(history) {
			data := w.Data()
			for n := range len(data) {
				r := snapshot.NewReader(data[:n])
				s.decode(s.id, r)
				if r.Done() == nil {
					t.Errorf("snapshot cut to %d of %d bytes decoded without error", n, len(data))
				}
			}
			r := snapshot.NewReader(append(append([]byte{}, data...), 0))
			s.decode(s.id, r)
			if r.Done() == nil {
				t.Errorf("snapshot with a byte added decoded without error")
			}
		}
	}
}

func TestProgramSnapshotPlusTailEqualsReplay(t *testing.T) {
	t.Parallel()
	first, second, _, _ := cloneLife(t)
	testSnapshotPlusTail(t, snapshotted[*domain.Program]{
		fresh: func() *domain.Program { return domain.NewProgram("baba-2025") }, id: "baba-2025",
		encode: domain.EncodeProgramSnapshot, decode: domain.DecodeProgramSnapshot,
	}, append(first, second...))
}

func TestOrderSnapshotPlusTailEqualsReplay(t *testing.T) {
	t.Parallel()
	_, _, first, second := cloneLife(t)
	id := domain.OrderIDFor("po-1")
	testSnapshotPlusTail(t, snapshotted[*domain.Order]{
		fresh: func() *domain.Order { return domain.NewOrder(id) }, id: id,
		encode: domain.EncodeOrderSnapshot, decode: domain.DecodeOrderSnapshot,
	}, append(first, second...))
}

// The snapshot schemas name every field of the aggregates (and of the
// values they hold): a field added without its place in the encoding, and
// a new schema version, would make snapshots silently drop it. When this
// fails, extend snapshot.go and bump the version, then the lists here.
func TestSnapshotsCoverEveryField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ     reflect.Type
		version int
		want    string
	}{
		{reflect.TypeFor[domain.Program](), domain.ProgramSnapshotVersion,
			"id string; opened *procurementevents.ProgramOpened; closed bool; reserved int64; orders int64; version uint64; overflow error"},
		{reflect.TypeFor[domain.Order](), domain.OrderSnapshotVersion,
			"id string; placed *procurementevents.OrderPlaced; prices map[string]int64; cancelled bool; released int64; totals domain.orderTotals; " +
				"overflow error; deliveries cowmap.Map[string,github.com/furrow/furrow/services/procurement/domain.line]; version uint64"},
		{reflect.TypeFor[domain.Order]().Field(5).Type, domain.OrderSnapshotVersion, "accepted int64; rejected int64; value int64"},
		{reflect.TypeFor[domain.DeliveryLine](), domain.OrderSnapshotVersion,
			"recorded *procurementevents.DeliveryRecorded; grams int64; grade string; price int64; amount int64; corrections int32; seq uint64; history []domain.correctionAt"},
		{reflect.TypeFor[domain.DeliveryLine]().Field(7).Type.Elem(), domain.OrderSnapshotVersion, "seq uint64; ev *procurementevents.DeliveryCorrected"},
	} {
		if got := fields(tc.typ); got != tc.want || tc.version != 1 {
			t.Errorf("%s (schema version %d) has fields\n\t%s\nthe snapshot encodes\n\t%s", tc.typ, tc.version, got, tc.want)
		}
	}
}

func fields(t reflect.Type) string {
	s := ""
	for i := range t.NumField() {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%s %s", t.Field(i).Name, t.Field(i).Type)
	}
	return s
}

func TestOverflowedProgramHasNoSnapshot(t *testing.T) {
	t.Parallel()
	p := domain.NewProgram("p")
	for seq := range uint64(2) {
		p.Apply(seq+1, &procurementevents.BudgetReserved{ProgramId: "p", OrderId: "O-legacy", AmountFen: math.MaxInt64})
	}
	if err := domain.EncodeProgramSnapshot(p, &snapshot.Writer{}); !errors.Is(err, domain.ErrSnapshotUnsupported) {
		t.Errorf("EncodeProgramSnapshot of an overflowed programme = %v, want ErrSnapshotUnsupported", err)
	}
}
