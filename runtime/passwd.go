package runtime

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/hpcrun/hpcrun/internal/envlist"
)

// Identity is the caller as the host's user and group databases name it.
type Identity struct {
	User  string
	UID   uint32
	Group string
	GID   uint32
	Gecos string
	Home  string
	Shell string
}

// PasswdWith returns an image's /etc/passwd with the caller's entry
// appended. Image entries with the caller's name or uid are dropped, so
// `whoami` and getpass.getuser() agree with the host.
func PasswdWith(image []byte, id Identity) []byte {
	line := strings.Join([]string{id.User, "x", u32(id.UID), u32(id.GID), id.Gecos, id.Home, id.Shell}, ":")
	return replaceEntry(image, id.User, id.UID, line)
}

// GroupWith returns an image's /etc/group with the caller's primary group
// appended, dropping image entries with its name or gid.
func GroupWith(image []byte, id Identity) []byte {
	line := strings.Join([]string{id.Group, "x", u32(id.GID), ""}, ":")
	return replaceEntry(image, id.Group, id.GID, line)
}

// HasID reports whether a passwd or group file has an entry with this id.
func HasID(db []byte, id uint32) bool {
	found := false
	eachEntry(db, func(line string, f []string) {
		if len(f) > 2 && f[2] == u32(id) {
			found = true
		}
	})
	return found
}

func replaceEntry(db []byte, name string, id uint32, entry string) []byte {
	var out bytes.Buffer
	eachEntry(db, func(line string, f []string) {
		if len(f) > 2 && (f[0] == name || f[2] == u32(id)) {
			return
		}
		out.WriteString(line)
		out.WriteByte('\n')
	})
	out.WriteString(entry)
	out.WriteByte('\n')
	return out.Bytes()
}

// eachEntry calls fn for every line of a colon-separated database, with
// its fields; comments and blank lines come with nil fields.
func eachEntry(db []byte, fn func(line string, fields []string)) {
	sc := bufio.NewScanner(bytes.NewReader(db))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			fn(line, nil)
			continue
		}
		fn(line, strings.Split(line, ":"))
	}
}

// lookupEntry finds the fields of the entry with this id.
func lookupEntry(db []byte, id uint32) []string {
	var hit []string
	eachEntry(db, func(line string, f []string) {
		if hit == nil && len(f) > 2 && f[2] == u32(id) {
			hit = f
		}
	})
	return hit
}

// LookupIdentity finds the caller's names on the host: /etc/passwd and
// /etc/group first, then getent (LDAP and sssd users on clusters), then
// $USER and $HOME from env. It never fails; a missing name becomes a
// synthetic one.
func LookupIdentity(uid, gid uint32, env []string) Identity {
	id := Identity{UID: uid, GID: gid, Shell: "/bin/sh"}
	pw := hostEntry("/etc/passwd", "passwd", uid)
	if len(pw) >= 7 {
		id.User, id.Gecos, id.Home, id.Shell = pw[0], pw[4], pw[5], pw[6]
	} else {
		id.User = envlist.Value(env, "USER")
		id.Home = envlist.Value(env, "HOME")
	}
	if id.User == "" {
		id.User = "user" + u32(uid)
	}
	if gr := hostEntry("/etc/group", "group", gid); len(gr) >= 1 {
		id.Group = gr[0]
	} else {
		id.Group = "group" + u32(gid)
	}
	return id
}

func hostEntry(file, db string, id uint32) []string {
	if b, err := os.ReadFile(file); err == nil {
		if f := lookupEntry(b, id); f != nil {
			return f
		}
	}
	out, err := exec.Command("getent", db, u32(id)).Output()
	if err != nil {
		return nil
	}
	return lookupEntry(out, id)
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
