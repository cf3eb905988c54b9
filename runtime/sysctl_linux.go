package runtime

// linux.sysctl, as runc applies it: the init writes each key under
// /proc/sys once it has unshared the container's namespaces, before
// anything runs. A key is allowed only where the namespace that scopes it
// is the container's own, as runc allows it: net.* with a network
// namespace, the System V IPC and POSIX mqueue keys with an ipc namespace,
// kernel.domainname with a uts one. Anything else would set the host's,
// which rootless hpcrun may not touch, and is refused at create.

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ipcSysctls are the kernel.* keys an ipc namespace scopes; fs.mqueue.*
// too.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// sysctlPart is one component of a key: a /proc/sys file or directory
// name. With "/" as the separator a component may hold dots (an interface
// name such as eth0.100), never be "." or "..".
// A check by hand, not a regexp: package regexp would make every start
// of the init stage initialize it, and yaml.v3 after it (see package
// stage).
func sysctlPart(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_' || c == '@' || c == ':' || c == '+' || c == '-':
		case c == '.' && i > 0:
		default:
			return false
		}
	}
	return p != ""
}

// sysctlFile checks linux.sysctl key for a container that unshares
// unshare (CLONE_NEW* flags beyond user, mount and pid) and returns the
// file under /proc/sys that sets it. Keys take "." or, as sysctl(8)
// allows, "/" between their components.
func sysctlFile(key string, unshare uintptr) (string, error) {
	sep := "."
	if strings.Contains(key, "/") {
		sep = "/"
	}
	parts := strings.Split(key, sep)
	for _, p := range parts {
		if !sysctlPart(p) || (sep == "/" && strings.Trim(p, ".") == "") {
			return "", fmt.Errorf("linux.sysctl: %q is not a sysctl key (such as net.ipv4.ip_forward)", key)
		}
	}
	dotted := strings.Join(parts, ".")
	var ns uintptr
	var nsName string
	switch {
	case parts[0] == "net":
		ns, nsName = unix.CLONE_NEWNET, "network"
	case ipcSysctls[dotted] || (len(parts) > 2 && parts[0] == "fs" && parts[1] == "mqueue"):
		ns, nsName = unix.CLONE_NEWIPC, "ipc"
	case dotted == "kernel.domainname":
		ns, nsName = unix.CLONE_NEWUTS, "uts"
	default:
		return "", fmt.Errorf("linux.sysctl: %s is not scoped by a namespace of the container's, and rootless hpcrun cannot set the host's; remove it", key)
	}
	if unshare&ns == 0 {
		return "", fmt.Errorf("linux.sysctl: %s needs a %s namespace of the container's own: add {\"type\": %q} to linux.namespaces, or remove the key", key, nsName, nsName)
	}
	return "/proc/sys/" + strings.Join(parts, "/"), nil
}

// sysctlWrites checks a spec's linux.sysctl and returns the writes that
// apply it, as FILE=VALUE, in the order of their keys.
func sysctlWrites(sysctl map[string]string, unshare uintptr) ([]string, error) {
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		file, err := sysctlFile(k, unshare)
		if err != nil {
			return nil, err
		}
		out = append(out, file+"="+sysctl[k])
	}
	return out, nil
}

// applySysctls makes the writes of sysctlWrites. It runs on the init's
// thread that unshared the namespaces: /proc/sys/net and the ipc keys
// show the namespaces of the thread that opens them.
func applySysctls(writes []string) error {
	for _, w := range writes {
		file, value, _ := strings.Cut(w, "=")
		key := strings.ReplaceAll(strings.TrimPrefix(file, "/proc/sys/"), "/", ".")
		// O_NOFOLLOW: /proc/sys holds no links, and nothing leads out of it.
		f, err := os.OpenFile(file, os.O_WRONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("linux.sysctl: %s: %w", key, err)
		}
		_, err = f.WriteString(value)
		f.Close()
		if err != nil {
			return fmt.Errorf("linux.sysctl: set %s to %q: %w", key, value, err)
		}
	}
	return nil
}
