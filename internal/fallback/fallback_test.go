package fallback

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[Feature]bool
		err  bool
	}{
		{"", map[Feature]bool{}, false},
		{"pidfd", map[Feature]bool{Pidfd: true}, false},
		{"pidfd, openat2,,close_range", map[Feature]bool{Pidfd: true, Openat2: true, CloseRange: true}, false},
		{"mount_setattr", map[Feature]bool{MountSetattr: true}, false},
		{"pidfds", nil, true},
		{"openat2,all", nil, true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("Parse(%q): error %v", tc.in, err)
			continue
		}
		if !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
