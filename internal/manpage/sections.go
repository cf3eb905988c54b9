package manpage

import (
	"strings"
)

// Entry is one item of a man page's list section: a name (a variable, a
// path) and what it is.
type Entry struct{ Name, Text string }

// Environment is hpcrun(1)'s ENVIRONMENT section: what hpcrun reads from
// its environment, and what it sets in a job's.
var Environment = []Entry{
	{"HPCRUN_CACHE", "the image cache directory (config key cache; --cache wins). Default: hpcrun-$UID in the scratch directory, /var/tmp/hpcrun-$UID on most nodes"},
	{"HPCRUN_SCRATCH", "the node-local scratch directory that holds the default cache (config key scratch)"},
	{"HPCRUN_SCRATCH_DIRS", "scratch filesystems bound into every container when present, ':'-separated (config key scratch_dirs)"},
	{"HPCRUN_BINDS", "binds every container gets, SRC[:DST[:ro]], ','-separated (config key binds); --bind adds to them"},
	{"HPCRUN_ENV_PASS, HPCRUN_ENV_DENY", "host variables (NAME or PREFIX*) that pass even with --cleanenv, and that never pass, ','-separated"},
	{"HPCRUNENV_NAME", "HPCRUNENV_NAME=VALUE on the host sets NAME=VALUE in the job, over the image's, even with --cleanenv (Apptainer's APPTAINERENV_NAME)"},
	{"HPCRUN_NETWORK", "the default of --net: host or none"},
	{"HPCRUN_JOIN_TIMEOUT", "how long the tasks of a group wait for the others, 1s to 24h (default 60s)"},
	{"HPCRUN_MAX_IMAGE_SIZE", "the most an image's files may add up to when unpacked, such as 64G"},
	{"HPCRUN_CONFIG", "a site configuration file to read instead of /etc/hpcrun/config.yaml"},
	{"HPCRUN_CONTAINER, HPCRUN_IMAGE", "set in every job: the container's name (1 when it has none) and the image (or root filesystem) it runs; /run/.containerenv says the same"},
	{"XDG_RUNTIME_DIR", "container state lives in $XDG_RUNTIME_DIR/hpcrun when that directory exists"},
	{"XDG_CONFIG_HOME", "the user's configuration is $XDG_CONFIG_HOME/hpcrun/config.yaml when it is set"},
	{"REGISTRY_AUTH_FILE, DOCKER_CONFIG", "where registry credentials are read and hpcrun login stores them (else ~/.docker/config.json)"},
	{"SSL_CERT_FILE, SSL_CERT_DIR", "the CAs that a registry's certificate is checked against, instead of the system's"},
}

// Files is hpcrun(1)'s FILES section.
var Files = []Entry{
	{"/etc/hpcrun/config.yaml", "the site's configuration (see hpcrun config)"},
	{"/etc/hpcrun/conf.d/*.yaml", "more site configuration, read after config.yaml in name order"},
	{"~/.config/hpcrun/config.yaml", "the user's configuration, over the site's; HPCRUN_* variables and flags win over both"},
	{"/var/tmp/hpcrun-$UID", "the default image cache (hpcrun-$UID in the scratch directory): images/ holds the unpacked images, blobs/ what pulls fetched, keys/ which file or reference gave which image. It is per node and per user: each node unpacks an image once, for all of the user's jobs there"},
	{"$XDG_RUNTIME_DIR/hpcrun, else /tmp/hpcrun-$UID/run", "container state: named and detached containers, their logs and exit statuses (--root names another)"},
	{"~/.docker/config.json", "registry credentials, read by pulls and written by hpcrun login"},
	{"/run/.containerenv", "inside a container: says that the job runs in hpcrun, and which image"},
}

// AddSections adds, after the EXIT STATUS section (or before EXAMPLE or
// SEE ALSO where there is none), a section per title with its entries,
// in roff.
func AddSections(page []byte, sections ...Section) []byte {
	var b strings.Builder
	for _, s := range sections {
		b.WriteString(".SH " + s.Title + "\n")
		for _, e := range s.Entries {
			b.WriteString(".TP\n\\fB" + roffEscape(e.Name) + "\\fR\n" + roffEscape(e.Text) + "\n")
		}
	}
	s := string(page)
	at := -1
	if i := strings.Index(s, "\n.SH EXIT STATUS\n"); i >= 0 {
		if j := strings.Index(s[i+1:], "\n.SH "); j >= 0 {
			at = i + 1 + j
		}
	}
	for _, next := range []string{"\n.SH EXAMPLE", "\n.SH SEE ALSO"} {
		if at < 0 {
			at = strings.Index(s, next)
		}
	}
	if at < 0 {
		return []byte(strings.TrimSuffix(s, "\n") + "\n" + b.String())
	}
	return []byte(s[:at+1] + b.String() + s[at+1:])
}

// Section is a titled list of entries.
type Section struct {
	Title   string
	Entries []Entry
}

// roffEscape keeps text literal in roff: backslashes escaped, and a dot
// or quote at a line's start made harmless.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// Flag is a command-line flag as a man page's OPTIONS show it.
type Flag struct {
	Name    string // the long name, without dashes
	Arg     string // its argument's name, as --help shows it; "" for a switch
	Default string // as cobra prints it
}

// ArgNames rewrites the OPTIONS entries that cobra/doc writes as
// `--name=""` into `--name ARG`, as --help shows them, with a default
// that is not empty after it.
func ArgNames(page []byte, flags []Flag) []byte {
	byName := map[string]Flag{}
	for _, f := range flags {
		byName[f.Name] = f
	}
	lines := strings.Split(string(page), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, `\fB`) {
			continue
		}
		start := strings.LastIndex(l, `\fB--`)
		if start < 0 {
			continue
		}
		rest := l[start+len(`\fB--`):]
		end := strings.Index(rest, `\fP`)
		if end < 0 {
			continue
		}
		f, ok := byName[rest[:end]]
		if !ok || f.Arg == "" {
			continue
		}
		after := rest[end+len(`\fP`):]
		if !strings.HasPrefix(after, "=") {
			continue
		}
		out := l[:start] + `\fB--` + rest[:end] + `\fP \fI` + roffEscape(f.Arg) + `\fP`
		if d := strings.Trim(f.Default, `"`); d != "" && d != "[]" && d != "0" && d != "0s" {
			out += ` (default: ` + roffEscape(d) + `)`
		}
		lines[i] = out
	}
	return []byte(strings.Join(lines, "\n"))
}
