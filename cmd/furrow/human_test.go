package main

import (
	"testing"
	"time"
)

// Issue 9, defect 10: an age of 2m40s printed as "2m4 ago" (the trailing
// "0s" of "2m40s" was trimmed as if it were zero seconds).
func TestHuman(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{850 * time.Millisecond, "850ms"},
		{59 * time.Second, "59s"},
		{59*time.Second + 600*time.Millisecond, "1m"},
		{time.Minute, "1m"},
		{2*time.Minute + 40*time.Second, "2m40s"},
		{4*time.Minute + 10*time.Second, "4m10s"},
		{10 * time.Minute, "10m"},
		{20*time.Minute + 5*time.Second, "20m5s"},
		{59*time.Minute + 59*time.Second + 600*time.Millisecond, "1h"},
		{time.Hour + 2*time.Minute, "1h2m"},
		{time.Hour + 20*time.Minute + 29*time.Second, "1h20m"},
		{3*time.Hour + 20*time.Minute, "3h20m"},
		{10 * time.Hour, "10h"},
		{26 * time.Hour, "26h"},
		{50*time.Hour + 30*time.Minute, "2d2h"},
	} {
		if got := human(tc.d); got != tc.want {
			t.Errorf("human(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
