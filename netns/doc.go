// Package netns owns a job's network: the host's by default, or with
// --net=none a new network namespace whose only interface, lo, is up. It
// adds the matching namespace and host files (/etc/hosts,
// /etc/resolv.conf) to a spec, and brings lo up from inside the init.
package netns
