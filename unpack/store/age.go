package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Age is how long ago an image was last used, as prune --older-than takes
// it: a Go duration (90m, 168h), or whole days or weeks (7d, 2w). It is a
// flag value (pflag.Value).
type Age time.Duration

// ParseAge reads an Age.
func ParseAge(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseUint(n, 10, 31)
			if err != nil {
				return 0, fmt.Errorf("age %q: want a whole number of days or weeks (7d, 2w) or a duration (36h, 90m)", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("age %q: want a whole number of days or weeks (7d, 2w) or a duration (36h, 90m)", s)
	}
	return d, nil
}

func (a *Age) Set(s string) error {
	d, err := ParseAge(s)
	if err == nil {
		*a = Age(d)
	}
	return err
}

func (a *Age) String() string {
	d := time.Duration(*a)
	switch {
	case d == 0:
		return "0"
	case d%(7*24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(7*24*time.Hour)), 10) + "w"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (a *Age) Type() string { return "age" }
