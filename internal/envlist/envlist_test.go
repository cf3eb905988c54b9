package envlist

import "testing"

func TestGet(t *testing.T) {
	env := []string{"A=1", "B=", "A=2", "NOEQ", "C=x=y"}
	for _, tc := range []struct {
		key  string
		want string
		ok   bool
	}{
		{"A", "2", true}, {"B", "", true}, {"C", "x=y", true}, {"NOEQ", "", false}, {"D", "", false},
	} {
		if v, ok := Get(env, tc.key); v != tc.want || ok != tc.ok {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tc.key, v, ok, tc.want, tc.ok)
		}
		if v := Value(env, tc.key); v != tc.want {
			t.Errorf("Value(%q) = %q, want %q", tc.key, v, tc.want)
		}
	}
}
