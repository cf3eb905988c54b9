package jobs

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"
	"gopkg.in/yaml.v3"
)

// SiteConfig is the site's config file; conf.d/*.yaml next to it are read
// after it, in name order. ConfigEnv names another file in its place.
const (
	SiteConfig = "/etc/hpcrun/config.yaml"
	ConfigEnv  = "HPCRUN_CONFIG"
)

// Setting is one config value and where it came from: "default", a
// file:line, an HPCRUN_* variable or a flag.
type Setting[T any] struct {
	Value T
	From  string
}

func (s Setting[T]) set() bool { return s.From != "" }

// Bind is a bind from the config, parsed by runtime's rules. A missing
// Source is skipped unless Required.
type Bind struct {
	runtime.Bind
	Required bool
	User     bool // from the user's file or HPCRUN_BINDS, not the site's
	From     string
}

// Config is hpcrun's configuration. Layers, each overriding the one
// before: the site file and its conf.d, the user's file, HPCRUN_*
// variables, then flags. A list set in a later layer replaces the whole
// list; --bind adds to the binds.
type Config struct {
	Cache            Setting[string]        // where unpacked images live
	Scratch          Setting[string]        // node-local scratch, home of the default cache
	ScratchDirs      Setting[[]string]      // site scratch filesystems bound into every container when present
	Binds            Setting[[]Bind]        // binds every container gets
	EnvPass          Setting[[]string]      // host variables that pass even with --cleanenv (NAME or PREFIX*)
	EnvDeny          Setting[[]string]      // host variables that never pass (NAME or PREFIX*)
	Network          Setting[string]        // host or none
	AllowSystemBinds Setting[bool]          // whether --bind may name the host's system dirs (site only)
	MaxImageSize     Setting[int64]         // the most an image may unpack to, in bytes: a decompression bomb's limit
	BatchLineWarning Setting[bool]          // whether a plain hpcrun line of a Slurm batch script is warned about
	JoinTimeout      Setting[time.Duration] // how long a group's tasks wait for those that have not come
	NewKeyring       Setting[bool]          // give each job a fresh session keyring rather than the caller's
	Criu             Setting[string]        // a site's static criu for hpcrun checkpoint; "" for the image's
}

// DefaultMaxImageSize is max_image_size when no layer sets it: far above
// any real HPC image, far below what fills a node's scratch by surprise.
const DefaultMaxImageSize = 64 << 30

// Defaults is the config before any layer.
func Defaults() Config {
	d := "default"
	return Config{
		ScratchDirs:      Setting[[]string]{nil, d},
		Binds:            Setting[[]Bind]{nil, d},
		EnvPass:          Setting[[]string]{nil, d},
		EnvDeny:          Setting[[]string]{nil, d},
		Network:          Setting[string]{"host", d},
		AllowSystemBinds: Setting[bool]{true, d},
		MaxImageSize:     Setting[int64]{DefaultMaxImageSize, d},
		BatchLineWarning: Setting[bool]{true, d},
		JoinTimeout:      Setting[time.Duration]{DefaultJoinTimeout, d},
		NewKeyring:       Setting[bool]{false, d},
		Criu:             Setting[string]{"", d},
	}
}

// DefaultJoinTimeout is join_timeout when no layer sets it: Slurm and MPI
// launchers start a node's tasks within a second or so, and a task still
// missing after a minute is not coming.
const DefaultJoinTimeout = 60 * time.Second

// parseJoinTimeout reads a join_timeout: a Go duration from 1s to 24h.
func parseJoinTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, fmt.Errorf("bad join_timeout %q: want a duration from 1s to 24h, such as 90s or 5m", s)
	}
	return d, nil
}

// Override sets in c every setting that l sets.
func (c *Config) Override(l Config) {
	over(&c.Cache, l.Cache)
	over(&c.Scratch, l.Scratch)
	over(&c.ScratchDirs, l.ScratchDirs)
	over(&c.Binds, l.Binds)
	over(&c.EnvPass, l.EnvPass)
	over(&c.EnvDeny, l.EnvDeny)
	over(&c.Network, l.Network)
	over(&c.AllowSystemBinds, l.AllowSystemBinds)
	over(&c.MaxImageSize, l.MaxImageSize)
	over(&c.BatchLineWarning, l.BatchLineWarning)
	over(&c.JoinTimeout, l.JoinTimeout)
	over(&c.NewKeyring, l.NewKeyring)
	over(&c.Criu, l.Criu)
}

func over[T any](dst *Setting[T], src Setting[T]) {
	if src.set() {
		*dst = src
	}
}

// Layer is which file a config came from: the site's may set everything,
// the user's all but the site's policy.
type Layer int

const (
	SiteLayer Layer = iota
	UserLayer
)

// keys are the config file's keys, in the order hpcrun config prints them.
var keys = []string{"cache", "scratch", "scratch_dirs", "binds", "env", "network", "allow_system_binds", "max_image_size", "batch_line_warning", "join_timeout", "new_keyring", "criu"}

// Vars are what $NAME in a config path may expand to.
type Vars map[string]string

// VarsFor are the variables a config path may use: $USER, $UID, $HOME.
func VarsFor(uid int, environ []string) Vars {
	e := newEnv(environ)
	return Vars{"USER": e["USER"], "UID": strconv.Itoa(uid), "HOME": e["HOME"]}
}

// expand replaces $NAME and ${NAME} with vars; any other is an error.
func (v Vars) expand(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		var name, ref string
		if strings.HasPrefix(s, "{") {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return "", fmt.Errorf("unclosed ${ in %q", "$"+s)
			}
			name, ref, s = s[1:end], "${"+s[1:end]+"}", s[end+1:]
		} else {
			n := 0
			for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
				n++
			}
			name, ref, s = s[:n], "$"+s[:n], s[n:]
		}
		val, ok := v[name]
		switch {
		case !ok:
			return "", fmt.Errorf("unknown variable %s (only $USER, $UID and $HOME expand)", ref)
		case val == "":
			return "", fmt.Errorf("%s is not set", ref)
		}
		b.WriteString(val)
	}
}

// ParseConfig reads one config file. Errors name the file and line.
func ParseConfig(name string, data []byte, layer Layer, vars Vars) (Config, error) {
	var c Config
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return c, yamlError(name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return c, nil // empty, or only comments
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return c, nil
	}
	p := parser{name: name, vars: vars, layer: layer}
	if top.Kind != yaml.MappingNode {
		return c, p.errf(top, "want settings as key: value lines, got %s", kindName(top))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if seen[k.Value] {
			return c, p.errf(k, "%s is set twice", k.Value)
		}
		seen[k.Value] = true
		from := p.at(k)
		var err error
		switch k.Value {
		case "cache":
			c.Cache.Value, err = p.path(k.Value, v)
			c.Cache.From = from
		case "scratch":
			c.Scratch.Value, err = p.path(k.Value, v)
			c.Scratch.From = from
		case "scratch_dirs":
			c.ScratchDirs.Value, err = p.paths(k.Value, v)
			c.ScratchDirs.From = from
		case "binds":
			c.Binds.Value, err = p.binds(v)
			c.Binds.From = from
		case "env":
			err = p.env(v, &c)
		case "network":
			c.Network.Value, err = p.scalar(k.Value, v, "host or none")
			if err == nil {
				if _, err = netns.ParseMode(c.Network.Value); err != nil {
					err = p.errf(v, "network: %v", err)
				}
			}
			c.Network.From = from
		case "allow_system_binds":
			if layer != SiteLayer {
				return c, p.errf(k, "allow_system_binds is the site's to set, in %s; remove it here", SiteConfig)
			}
			c.AllowSystemBinds.Value, err = p.boolean(k.Value, v)
			c.AllowSystemBinds.From = from
		case "max_image_size":
			var str string
			if str, err = p.scalar(k.Value, v, "a size such as 64G"); err == nil {
				if c.MaxImageSize.Value, err = ParseSize(str); err != nil {
					err = p.errf(v, "max_image_size: %v", err)
				}
			}
			c.MaxImageSize.From = from
		case "batch_line_warning":
			c.BatchLineWarning.Value, err = p.boolean(k.Value, v)
			c.BatchLineWarning.From = from
		case "join_timeout":
			var str string
			if str, err = p.scalar(k.Value, v, "a duration such as 90s"); err == nil {
				if c.JoinTimeout.Value, err = parseJoinTimeout(str); err != nil {
					err = p.errf(v, "%v", err)
				}
			}
			c.JoinTimeout.From = from
		case "new_keyring":
			c.NewKeyring.Value, err = p.boolean(k.Value, v)
			c.NewKeyring.From = from
		case "criu":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!null" { // ~: the image's
				c.Criu.Value, err = p.path(k.Value, v)
			}
			c.Criu.From = from
		default:
			return c, p.errf(k, "unknown key %q (known: %s)", k.Value, strings.Join(keys, ", "))
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// yamlError puts the file name in front of a yaml.v3 error, as
// file:line when the error names a line.
func yamlError(name string, err error) error {
	msg := strings.TrimSpace(err.Error())
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "unmarshal errors:"))
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				// yaml.v3 counts the lines of its parser's errors (not its
				// scanner's) from 0.
				if strings.HasPrefix(tail, "did not find expected") {
					line++
				}
				return fmt.Errorf("%s:%d: %s", name, line, tail)
			}
		}
	}
	return fmt.Errorf("%s: %s", name, msg)
}

type parser struct {
	name  string
	vars  Vars
	layer Layer
}

func (p parser) at(n *yaml.Node) string { return fmt.Sprintf("%s:%d", p.name, n.Line) }

func (p parser) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", p.at(n), fmt.Sprintf(format, args...))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!bool":
		return "true/false"
	case "!!int", "!!float":
		return "a number"
	}
	return strconv.Quote(n.Value)
}

func (p parser) scalar(key string, n *yaml.Node, want string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, "%s: want %s, got %s", key, want, kindName(n))
	}
	return n.Value, nil
}

func (p parser) boolean(key string, n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, p.errf(n, "%s: want true or false, got %s", key, kindName(n))
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, p.errf(n, "%s: %v", key, err)
	}
	return b, nil
}

// path is an absolute path, after $USER, $UID and $HOME expand.
func (p parser) path(key string, n *yaml.Node) (string, error) {
	s, err := p.scalar(key, n, "an absolute path")
	if err != nil {
		return "", err
	}
	if n.Tag != "!!str" {
		return "", p.errf(n, "%s: want an absolute path, got %s", key, kindName(n))
	}
	s, err = p.vars.expand(s)
	if err != nil {
		return "", p.errf(n, "%s: %v", key, err)
	}
	if !filepath.IsAbs(s) {
		return "", p.errf(n, "%s: want an absolute path, got %q", key, s)
	}
	return filepath.Clean(s), nil
}

func (p parser) list(key string, n *yaml.Node, want string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: want a list of %s, got %s", key, want, kindName(n))
	}
	return n.Content, nil
}

func (p parser) paths(key string, n *yaml.Node) ([]string, error) {
	items, err := p.list(key, n, "absolute paths")
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, it := range items {
		s, err := p.path(key, it)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// binds reads a list whose items are "SRC[:DST[:ro]]" or
// {src: SRC, dst: DST, ro: BOOL, required: BOOL}.
func (p parser) binds(n *yaml.Node) ([]Bind, error) {
	items, err := p.list("binds", n, "binds")
	if err != nil {
		return nil, err
	}
	out := []Bind{}
	for _, it := range items {
		b := Bind{From: p.at(it), User: p.layer == UserLayer}
		switch it.Kind {
		case yaml.ScalarNode:
			s, err := p.scalar("binds", it, "SRC[:DST[:ro]]")
			if err != nil {
				return nil, err
			}
			if s, err = p.vars.expand(s); err != nil {
				return nil, p.errf(it, "binds: %v", err)
			}
			// "SRC:" has always meant SRC at the same path in config files.
			if strings.Count(s, ":") == 1 {
				s = strings.TrimSuffix(s, ":")
			}
			if src, _, _ := strings.Cut(s, ":"); !filepath.IsAbs(src) {
				return nil, p.errf(it, "binds: want absolute paths, got %q", s)
			}
			if b.Bind, err = runtime.ParseBind(s, "/"); err != nil {
				return nil, p.errf(it, "binds: %v", err)
			}
		case yaml.MappingNode:
			var src, dst string
			ro := false
			for i := 0; i+1 < len(it.Content); i += 2 {
				k, v := it.Content[i], it.Content[i+1]
				var err error
				switch k.Value {
				case "src":
					src, err = p.scalar("binds: src", v, "a path")
				case "dst":
					dst, err = p.scalar("binds: dst", v, "a path")
				case "ro":
					ro, err = p.boolean("binds: ro", v)
				case "required":
					b.Required, err = p.boolean("binds: required", v)
				default:
					return nil, p.errf(k, "binds: unknown key %q (known: src, dst, ro, required)", k.Value)
				}
				if err != nil {
					return nil, err
				}
			}
			if src == "" {
				return nil, p.errf(it, "binds: src is missing")
			}
			var err error
			if src, err = p.vars.expand(src); err == nil {
				dst, err = p.vars.expand(dst)
			}
			if err != nil {
				return nil, p.errf(it, "binds: %v", err)
			}
			if !filepath.IsAbs(src) {
				return nil, p.errf(it, "binds: want absolute paths, got %q", src)
			}
			if b.Bind, err = runtime.NewBind(src, dst, ro, "/"); err != nil {
				return nil, p.errf(it, "binds: %v", err)
			}
		default:
			return nil, p.errf(it, "binds: want SRC[:DST[:ro]] or {src: SRC, dst: DST, ro: true, required: true}, got %s", kindName(it))
		}
		out = append(out, b)
	}
	return out, nil
}

// env reads env: {pass: [...], deny: [...]}.
func (p parser) env(n *yaml.Node, c *Config) error {
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "env: want pass: and deny: lists, got %s", kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var dst *Setting[[]string]
		switch k.Value {
		case "pass":
			dst = &c.EnvPass
		case "deny":
			dst = &c.EnvDeny
		default:
			return p.errf(k, "env: unknown key %q (known: pass, deny)", k.Value)
		}
		items, err := p.list("env: "+k.Value, v, "variable names")
		if err != nil {
			return err
		}
		names := []string{}
		for _, it := range items {
			s, err := p.scalar("env: "+k.Value, it, "a variable name")
			if err != nil {
				return err
			}
			if err := checkPattern(s); err != nil {
				return p.errf(it, "env: %s: %v", k.Value, err)
			}
			names = append(names, s)
		}
		*dst = Setting[[]string]{names, p.at(k)}
	}
	return nil
}

// checkPattern accepts NAME or PREFIX*.
func checkPattern(s string) error {
	if !validName(strings.TrimSuffix(s, "*")) {
		return fmt.Errorf("want a NAME or a PREFIX*, got %q", s)
	}
	return nil
}

// ParseSize reads a size: a number of bytes, or one with a K, M, G or T
// suffix (powers of 1024; "GiB", "GB" and "g" read the same).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(t), "B"), "I")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("want a size such as 64G or 500M, got %q", s)
	}
	return n << shift, nil
}

// FormatSize writes a size as ParseSize reads it, in the largest unit
// that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		shift int
		unit  string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10)
}

// EnvVars are the HPCRUN_* variables that set config keys.
var EnvVars = []struct{ Name, Key, Help string }{
	{"HPCRUN_CACHE", "cache", "an absolute path"},
	{"HPCRUN_SCRATCH", "scratch", "an absolute path"},
	{"HPCRUN_SCRATCH_DIRS", "scratch_dirs", "absolute paths separated by ':'"},
	{"HPCRUN_BINDS", "binds", "SRC[:DST[:ro]] binds separated by ','"},
	{"HPCRUN_ENV_PASS", "env pass", "names or PREFIX* separated by ','"},
	{"HPCRUN_ENV_DENY", "env deny", "names or PREFIX* separated by ','"},
	{"HPCRUN_NETWORK", "network", "host or none"},
	{"HPCRUN_MAX_IMAGE_SIZE", "max_image_size", "a size such as 64G"},
	{"HPCRUN_JOIN_TIMEOUT", "join_timeout", "a duration from 1s to 24h, such as 90s"},
	{"HPCRUN_CRIU", "criu", "an absolute path"},
}

// FromVariables is the config layer of HPCRUN_* variables. An empty
// variable counts as unset.
func FromVariables(environ []string) (Config, error) {
	e := newEnv(environ)
	var c Config
	for _, v := range EnvVars {
		val := e[v.Name]
		if val == "" {
			continue
		}
		bad := func(why string) error {
			return fmt.Errorf("%s=%s: want %s%s", v.Name, val, v.Help, why)
		}
		abs := func(s string) (string, error) {
			if !filepath.IsAbs(s) {
				return "", bad("")
			}
			return filepath.Clean(s), nil
		}
		var err error
		switch v.Name {
		case "HPCRUN_CACHE":
			c.Cache = Setting[string]{From: v.Name}
			c.Cache.Value, err = abs(val)
		case "HPCRUN_SCRATCH":
			c.Scratch = Setting[string]{From: v.Name}
			c.Scratch.Value, err = abs(val)
		case "HPCRUN_CRIU":
			c.Criu = Setting[string]{From: v.Name}
			c.Criu.Value, err = abs(val)
		case "HPCRUN_SCRATCH_DIRS":
			c.ScratchDirs = Setting[[]string]{[]string{}, v.Name}
			for _, s := range strings.Split(val, ":") {
				if s == "" {
					continue
				}
				d, err := abs(s)
				if err != nil {
					return c, err
				}
				c.ScratchDirs.Value = append(c.ScratchDirs.Value, d)
			}
		case "HPCRUN_BINDS":
			c.Binds = Setting[[]Bind]{[]Bind{}, v.Name}
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				if src, _, _ := strings.Cut(s, ":"); !filepath.IsAbs(src) {
					return c, bad(": " + src + " is not absolute")
				}
				rb, perr := runtime.ParseBind(s, "/")
				if perr != nil {
					return c, bad(": " + perr.Error())
				}
				c.Binds.Value = append(c.Binds.Value, Bind{Bind: rb, User: true, From: v.Name})
			}
		case "HPCRUN_ENV_PASS", "HPCRUN_ENV_DENY":
			names := []string{}
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				if checkPattern(s) != nil {
					return c, bad(": " + strconv.Quote(s) + " is neither")
				}
				names = append(names, s)
			}
			if v.Name == "HPCRUN_ENV_PASS" {
				c.EnvPass = Setting[[]string]{names, v.Name}
			} else {
				c.EnvDeny = Setting[[]string]{names, v.Name}
			}
		case "HPCRUN_NETWORK":
			if _, perr := netns.ParseMode(val); perr != nil {
				return c, bad("")
			}
			c.Network = Setting[string]{val, v.Name}
		case "HPCRUN_MAX_IMAGE_SIZE":
			n, perr := ParseSize(val)
			if perr != nil {
				return c, bad("")
			}
			c.MaxImageSize = Setting[int64]{n, v.Name}
		case "HPCRUN_JOIN_TIMEOUT":
			d, perr := parseJoinTimeout(val)
			if perr != nil {
				return c, bad("")
			}
			c.JoinTimeout = Setting[time.Duration]{d, v.Name}
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// CheckUserBind refuses a user's bind of a host system dir when the site
// forbids it.
func (c *Config) CheckUserBind(source string) error {
	if c.AllowSystemBinds.Value {
		return nil
	}
	if d := runtime.SystemDir(source); d != "" {
		return fmt.Errorf("bind of %s refused: the site config (%s) forbids binding the host's system dirs (%s); bind from elsewhere, or ask your admins", source, c.AllowSystemBinds.From, d)
	}
	return nil
}

// MatchName reports whether a variable name matches one of the patterns
// (NAME or PREFIX*).
func MatchName(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			return strings.HasPrefix(name, pre)
		}
		return p == name
	})
}
