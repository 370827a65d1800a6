package domain

import (
	"fmt"
	"time"

	"github.com/furrow/furrow/pkg/failure"
)

// CST is China Standard Time (Asia/Shanghai), the time zone of every date
// boundary in brand incubation: the day a sale was made, the first day of
// a rule or an enrolment. China has kept UTC+08:00 without daylight saving
// since 1991, so a fixed zone gives the same days as the tz database and
// does not depend on the host having tzdata.
var CST = time.FixedZone("CST", 8*60*60)

// Date is a calendar day in CST, counted in days since 1970-01-01. Its
// text form is "YYYY-MM-DD".
type Date int32

// Month is a calendar month in CST, counted in months since year 0. Its
// text form is "YYYY-MM".
type Month int32

// Limits of the dates accepted from clients: anything outside is a typo.
var (
	MinDate = MustDate("2000-01-01")
	MaxDate = MustDate("2099-12-31")
)

const (
	dateLayout  = "2006-01-02"
	monthLayout = "2006-01"
	secsPerDay  = 24 * 60 * 60
)

// ParseDate parses a "YYYY-MM-DD" day, failing with an Invalid failure
// naming field.
func ParseDate(field, s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return 0, failure.Invalid(field, "%q is not a date (YYYY-MM-DD)", s)
	}
	d := Date(t.Unix() / secsPerDay)
	if d < MinDate || d > MaxDate {
		return 0, failure.Invalid(field, "%s is outside %s..%s", s, MinDate, MaxDate)
	}
	return d, nil
}

// MustDate parses a date known to be valid (constants, tests).
func MustDate(s string) Date {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		panic(fmt.Sprintf("domain.MustDate(%q): %v", s, err))
	}
	return Date(t.Unix() / secsPerDay)
}

// DateOf is the day t falls on in CST.
func DateOf(t time.Time) Date {
	y, m, d := t.In(CST).Date()
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / secsPerDay)
}

// String is the "YYYY-MM-DD" form.
func (d Date) String() string { return d.utc().Format(dateLayout) }

// Start is the first instant of the day in CST.
func (d Date) Start() time.Time {
	y, m, day := d.utc().Date()
	return time.Date(y, m, day, 0, 0, 0, 0, CST)
}

// Month is the month the day falls in.
func (d Date) Month() Month {
	y, m, _ := d.utc().Date()
	return Month(y*12 + int(m) - 1)
}

func (d Date) utc() time.Time { return time.Unix(int64(d)*secsPerDay, 0).UTC() }

// ParseMonth parses a "YYYY-MM" month, failing with an Invalid failure
// naming field.
func ParseMonth(field, s string) (Month, error) {
	t, err := time.Parse(monthLayout, s)
	if err != nil {
		return 0, failure.Invalid(field, "%q is not a month (YYYY-MM)", s)
	}
	m := Month(t.Year()*12 + int(t.Month()) - 1)
	if m < MinDate.Month() || m > MaxDate.Month() {
		return 0, failure.Invalid(field, "%s is outside %s..%s", s, MinDate.Month(), MaxDate.Month())
	}
	return m, nil
}

// MonthOf is the month t falls in, in CST.
func MonthOf(t time.Time) Month { return DateOf(t).Month() }

// String is the "YYYY-MM" form.
func (m Month) String() string {
	return fmt.Sprintf("%04d-%02d", int(m)/12, int(m)%12+1)
}

// First is the month's first day.
func (m Month) First() Date {
	return DateOf(time.Date(int(m)/12, time.Month(int(m)%12+1), 1, 0, 0, 0, 0, CST))
}

// Last is the month's last day.
func (m Month) Last() Date { return (m + 1).First() - 1 }

// optionalDate parses s, or returns def when s is empty.
func optionalDate(field, s string, def Date) (Date, error) {
	if s == "" {
		return def, nil
	}
	return ParseDate(field, s)
}
