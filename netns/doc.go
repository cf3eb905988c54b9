// Package netns owns a job's network mode: the host's network by default,
// or with --net=none a new network namespace whose only interface, lo, is
// up (the init brings it up, in runtime). It reads the mode and adds the
// matching namespace to a spec. What both modes share, such as the host's
// /etc/hosts and /etc/resolv.conf, is in runtime's default mounts.
package netns
