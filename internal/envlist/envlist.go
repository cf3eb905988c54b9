// Package envlist reads environments given as K=V strings, as exec takes
// them: the job's, the host's, the image's.
package envlist

import "strings"

// Get is key's value in env and whether it is set: the last of
// duplicates wins, as for getenv.
func Get(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Value is key's value in env, "" when it is not set.
func Value(env []string, key string) string {
	v, _ := Get(env, key)
	return v
}
