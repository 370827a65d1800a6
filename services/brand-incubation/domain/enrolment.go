package domain

import (
	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/limits"
)

// EnrolmentID is the aggregate id of a farmer's enrolment in a brand.
func EnrolmentID(brandID, farmerID string) string { return pairID(brandID, farmerID) }

// Standing is a farmer's standing in a brand on a given day.
type Standing int

// The standings.
const (
	// NeverEnrolled: the farmer has no enrolment in the brand at all.
	NeverEnrolled Standing = iota
	// BeforeEnrolment: the farmer is enrolled, but from a later day.
	BeforeEnrolment
	// Enrolled: the farmer is a certified producer that day.
	Enrolled
	// Suspended: the farmer's enrolment is suspended that day.
	Suspended
)

// enrolmentChange is one enrolment or suspension, from a day on.
type enrolmentChange struct {
	enrolled bool
	from     Date
	note     string // certificate or reason
}

// Enrolment is one farmer's enrolment in one brand: the aggregate keeps
// its own history (enrolled, suspended, enrolled again) and is small, so
// enrolling one farmer never contends with enrolling another.
type Enrolment struct {
	brandID  string
	farmerID string
	changes  []enrolmentChange // days never decrease
	version  uint64
}

var _ Aggregate = (*Enrolment)(nil)

// NewEnrolment returns the empty aggregate, ready to replay events.
func NewEnrolment(brandID, farmerID string) *Enrolment {
	return &Enrolment{brandID: brandID, farmerID: farmerID}
}

// Filter implements Aggregate.
func (e *Enrolment) Filter() string { return filter(TypeEnrolment, EnrolmentID(e.brandID, e.farmerID)) }

// Subject implements Aggregate.
func (e *Enrolment) Subject(kind string) string {
	return subject(TypeEnrolment, EnrolmentID(e.brandID, e.farmerID), kind)
}

// Apply implements Aggregate.
func (e *Enrolment) Apply(seq uint64, ev proto.Message) {
	e.version = seq
	switch x := ev.(type) {
	case *brandevents.FarmerEnrolled:
		from, _ := ParseDate("enrolled_from", x.GetEnrolledFrom())
		e.changes = append(e.changes, enrolmentChange{enrolled: true, from: from, note: x.GetCertificate()})
	case *brandevents.FarmerSuspended:
		from, _ := ParseDate("suspended_from", x.GetSuspendedFrom())
		e.changes = append(e.changes, enrolmentChange{enrolled: false, from: from, note: x.GetReason()})
	}
}

// Version implements Aggregate.
func (e *Enrolment) Version() uint64 { return e.version }

// BrandID returns the brand.
func (e *Enrolment) BrandID() string { return e.brandID }

// FarmerID returns the farmer.
func (e *Enrolment) FarmerID() string { return e.farmerID }

// Ever reports whether the farmer was ever enrolled in the brand.
func (e *Enrolment) Ever() bool { return len(e.changes) > 0 }

// Current returns whether the latest change is an enrolment, and its day.
func (e *Enrolment) Current() (enrolled bool, from Date) {
	if len(e.changes) == 0 {
		return false, 0
	}
	c := e.changes[len(e.changes)-1]
	return c.enrolled, c.from
}

// FirstEnrolled is the first day the farmer was ever enrolled.
func (e *Enrolment) FirstEnrolled() (Date, bool) {
	if len(e.changes) == 0 {
		return 0, false
	}
	return e.changes[0].from, true
}

// StandingOn returns the farmer's standing on day d, and the day the
// standing began (for messages).
func (e *Enrolment) StandingOn(d Date) (Standing, Date) {
	if len(e.changes) == 0 {
		return NeverEnrolled, 0
	}
	if d < e.changes[0].from {
		return BeforeEnrolment, e.changes[0].from
	}
	// The changes' days never decrease: the last one on or before d rules.
	cur := e.changes[0]
	for _, c := range e.changes[1:] {
		if c.from > d {
			break
		}
		cur = c
	}
	if cur.enrolled {
		return Enrolled, cur.from
	}
	return Suspended, cur.from
}

// Enrol makes the farmer a certified producer of brand from a day on
// (default today). The farmer must be registered with the ledger, the
// brand registered and not retired, and the farmer not enrolled already.
func (e *Enrolment) Enrol(brand *Brand, farmerRegistered bool, enrolledFrom, certificate string, today Date) (*brandevents.FarmerEnrolled, error) {
	if err := checkIDs("brand_id", e.brandID, "farmer_id", e.farmerID); err != nil {
		return nil, err
	}
	from, err := optionalDate("enrolled_from", enrolledFrom, today)
	if err != nil {
		return nil, err
	}
	if err := optionalText("certificate", certificate, limits.MaxNameLen); err != nil {
		return nil, err
	}
	if !brand.Registered() {
		return nil, failure.NotFound("brand_id", "brand %s does not exist", e.brandID)
	}
	if !farmerRegistered {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered with the ledger", e.farmerID)
	}
	if on, retired := brand.RetiredOn(); retired {
		return nil, failure.FailedPrecondition("brand %s is retired since %s: it enrols no farmers", e.brandID, on)
	}
	if enrolled, since := e.Current(); enrolled {
		return nil, failure.AlreadyExists("farmer_id", "farmer %s is already enrolled in brand %s from %s", e.farmerID, e.brandID, since)
	} else if e.Ever() && from < since {
		return nil, failure.Invalid("enrolled_from", "%s precedes the suspension from %s", from, since)
	}
	return &brandevents.FarmerEnrolled{
		BrandId: e.brandID, FarmerId: e.farmerID, EnrolledFrom: from.String(), Certificate: certificate,
	}, nil
}

// Suspend suspends an enrolled farmer from a day on (default today); a
// reason is required.
func (e *Enrolment) Suspend(suspendedFrom, reason string, today Date) (*brandevents.FarmerSuspended, error) {
	if err := checkIDs("brand_id", e.brandID, "farmer_id", e.farmerID); err != nil {
		return nil, err
	}
	from, err := optionalDate("suspended_from", suspendedFrom, today)
	if err != nil {
		return nil, err
	}
	if err := requiredText("reason", reason, limits.MaxTextLen); err != nil {
		return nil, err
	}
	if !e.Ever() {
		return nil, failure.NotFound("farmer_id", "farmer %s is not enrolled in brand %s", e.farmerID, e.brandID)
	}
	enrolled, since := e.Current()
	if !enrolled {
		return nil, failure.FailedPrecondition("farmer %s is already suspended from brand %s from %s", e.farmerID, e.brandID, since)
	}
	if from < since {
		return nil, failure.Invalid("suspended_from", "%s precedes the enrolment from %s", from, since)
	}
	return &brandevents.FarmerSuspended{
		BrandId: e.brandID, FarmerId: e.farmerID, SuspendedFrom: from.String(), Reason: reason,
	}, nil
}
