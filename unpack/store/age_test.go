package store

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	day := 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"7d": 7 * day, "2w": 14 * day, "0d": 0, "168h": 7 * day, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute,
	} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "-1d", "1.5d", "7days", "-5h", "w2"} {
		if got, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) = %v, want an error", in, got)
		}
	}
	var a Age
	for in, want := range map[string]string{"14d": "2w", "3d": "3d", "36h": "36h0m0s"} {
		if err := a.Set(in); err != nil || a.String() != want {
			t.Errorf("Age.Set(%q): %q, %v; want %q", in, a.String(), err, want)
		}
	}
}
