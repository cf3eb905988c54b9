package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ConfigPaths are the config files hpcrun reads, in order: the site file,
// the conf.d dir next to it (every *.yaml in it, in name order), and the
// user's file ("" when $HOME and $XDG_CONFIG_HOME are unset).
func ConfigPaths(environ []string) (site, confd, user string) {
	e := newEnv(environ)
	site = SiteConfig
	if p := e[ConfigEnv]; p != "" {
		site = p
	}
	confd = filepath.Join(filepath.Dir(site), "conf.d")
	switch x, h := e["XDG_CONFIG_HOME"], e["HOME"]; {
	case filepath.IsAbs(x):
		user = filepath.Join(x, "hpcrun", "config.yaml")
	case filepath.IsAbs(h) && h != "/":
		user = filepath.Join(h, ".config", "hpcrun", "config.yaml")
	}
	return site, confd, user
}

// Loaded is the config of every layer but flags, and the files read.
type Loaded struct {
	Config Config
	Read   []string // the files that were read, in order
	Absent []string // the files looked for and not found
}

// LoadConfig reads the site's and the user's files and the HPCRUN_*
// variables of environ, each layer over the one before. uid and environ
// give $USER, $UID and $HOME in config paths.
func LoadConfig(environ []string, uid int) (Loaded, error) {
	l := Loaded{Config: Defaults()}
	site, confd, user := ConfigPaths(environ)
	vars := VarsFor(uid, environ)
	read := func(name string, layer Layer, mustExist bool) error {
		b, err := os.ReadFile(name)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !mustExist:
			l.Absent = append(l.Absent, name)
			return nil
		case errors.Is(err, fs.ErrPermission) && layer == UserLayer:
			// $HOME is someone else's (sudo, setpriv): not your config.
			l.Absent = append(l.Absent, name)
			return nil
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cannot read the site config %s (permission denied); ask your admins to make it readable (chmod 644)", name)
		case err != nil:
			return fmt.Errorf("read the config: %w", err)
		}
		c, err := ParseConfig(name, b, layer, vars)
		if err != nil {
			return err
		}
		l.Config.Override(c)
		l.Read = append(l.Read, name)
		return nil
	}
	if err := read(site, SiteLayer, newEnv(environ)[ConfigEnv] != ""); err != nil {
		return l, err
	}
	ents, err := os.ReadDir(confd)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("read the config: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".yaml") && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := read(filepath.Join(confd, n), SiteLayer, false); err != nil {
			return l, err
		}
	}
	if user != "" {
		if err := read(user, UserLayer, false); err != nil {
			return l, err
		}
	}
	c, err := FromVariables(environ)
	if err != nil {
		return l, err
	}
	l.Config.Override(c)
	return l, nil
}

// Render prints the config as YAML that hpcrun could read back, each
// value followed by where it came from.
func (c Config) Render() string {
	var b strings.Builder
	line := func(text, from string) {
		if from == "" {
			from = "not set"
		}
		fmt.Fprintf(&b, "%-44s # %s\n", text, from)
	}
	list := func(key string, items []string, from string) {
		if len(items) == 0 {
			line(key+": []", from)
			return
		}
		line(key+":", from)
		indent := key[:len(key)-len(strings.TrimLeft(key, " "))]
		for _, it := range items {
			fmt.Fprintf(&b, "%s  - %s\n", indent, quote(it))
		}
	}
	str := func(key string, s Setting[string]) {
		if s.Value == "" {
			line(key+": ~", s.From)
			return
		}
		line(key+": "+quote(s.Value), s.From)
	}
	str("cache", c.Cache)
	str("scratch", c.Scratch)
	list("scratch_dirs", c.ScratchDirs.Value, c.ScratchDirs.From)
	if len(c.Binds.Value) == 0 {
		line("binds: []", c.Binds.From)
	} else {
		line("binds:", c.Binds.From)
		for _, bd := range c.Binds.Value {
			fmt.Fprintf(&b, "  - {src: %s", quote(bd.Source))
			if bd.Dest != bd.Source {
				fmt.Fprintf(&b, ", dst: %s", quote(bd.Dest))
			}
			if bd.ReadOnly {
				b.WriteString(", ro: true")
			}
			fmt.Fprintf(&b, ", required: %v}\n", bd.Required)
		}
	}
	b.WriteString("env:\n")
	list("  pass", c.EnvPass.Value, c.EnvPass.From)
	list("  deny", c.EnvDeny.Value, c.EnvDeny.From)
	str("network", c.Network)
	line("allow_system_binds: "+strconv.FormatBool(c.AllowSystemBinds.Value), c.AllowSystemBinds.From)
	if c.MaxImageSize.Value > 0 {
		line("max_image_size: "+FormatSize(c.MaxImageSize.Value), c.MaxImageSize.From)
	} else {
		line("max_image_size: ~", c.MaxImageSize.From)
	}
	line("batch_line_warning: "+strconv.FormatBool(c.BatchLineWarning.Value), c.BatchLineWarning.From)
	if c.JoinTimeout.Value > 0 {
		line("join_timeout: "+c.JoinTimeout.Value.String(), c.JoinTimeout.From)
	}
	line("new_keyring: "+strconv.FormatBool(c.NewKeyring.Value), c.NewKeyring.From)
	str("criu", c.Criu)
	return b.String()
}

// quote leaves a plain path or name bare and quotes anything YAML could
// read as something else.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	for i, r := range s {
		plain := r == '/' || r == '.' || r == '_' || (r == '-' || r == '*') && i > 0 ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !plain {
			return strconv.Quote(s)
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.Quote(s)
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "y", "n":
		return strconv.Quote(s)
	}
	return s
}
