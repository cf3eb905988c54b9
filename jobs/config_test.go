package jobs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hpcrun/hpcrun/runtime"
)

var testVars = Vars{"USER": "alice", "UID": "1000", "HOME": "/home/alice"}

func TestParseConfig(t *testing.T) {
	const full = `# a site config
cache: /local/$USER/hpcrun
scratch: /local
scratch_dirs: [/scratch, "/lustre/${USER}"]
binds:
  - /etc/slurm:/etc/slurm:ro
  - {src: /opt/site, required: true}
  - src: $HOME/data
    dst: /data
env:
  pass: [MY_SITE_*, LICENSE_SERVER]
  deny: [AWS_SECRET_ACCESS_KEY]
network: none
allow_system_binds: false
max_image_size: 100GiB
batch_line_warning: false
join_timeout: 5m
new_keyring: true
criu: /opt/criu/bin/criu
`
	c, err := ParseConfig("site.yaml", []byte(full), SiteLayer, testVars)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Cache:       Setting[string]{"/local/alice/hpcrun", "site.yaml:2"},
		Scratch:     Setting[string]{"/local", "site.yaml:3"},
		ScratchDirs: Setting[[]string]{[]string{"/scratch", "/lustre/alice"}, "site.yaml:4"},
		Binds: Setting[[]Bind]{[]Bind{
			{Bind: runtime.Bind{Source: "/etc/slurm", Dest: "/etc/slurm", ReadOnly: true}, From: "site.yaml:6"},
			{Bind: runtime.Bind{Source: "/opt/site", Dest: "/opt/site"}, Required: true, From: "site.yaml:7"},
			{Bind: runtime.Bind{Source: "/home/alice/data", Dest: "/data"}, From: "site.yaml:8"},
		}, "site.yaml:5"},
		EnvPass:          Setting[[]string]{[]string{"MY_SITE_*", "LICENSE_SERVER"}, "site.yaml:11"},
		EnvDeny:          Setting[[]string]{[]string{"AWS_SECRET_ACCESS_KEY"}, "site.yaml:12"},
		Network:          Setting[string]{"none", "site.yaml:13"},
		AllowSystemBinds: Setting[bool]{false, "site.yaml:14"},
		MaxImageSize:     Setting[int64]{100 << 30, "site.yaml:15"},
		BatchLineWarning: Setting[bool]{false, "site.yaml:16"},
		JoinTimeout:      Setting[time.Duration]{5 * time.Minute, "site.yaml:17"},
		NewKeyring:       Setting[bool]{true, "site.yaml:18"},
		Criu:             Setting[string]{"/opt/criu/bin/criu", "site.yaml:19"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("ParseConfig:\n got %+v\nwant %+v", c, want)
	}

	// What hpcrun config prints reads back as the same config.
	back, err := ParseConfig("rendered", []byte(c.Render()), SiteLayer, testVars)
	if err != nil {
		t.Fatalf("Render's output does not parse: %v\n%s", err, c.Render())
	}
	for _, s := range []*Config{&back, &c} {
		s.Cache.From, s.Scratch.From, s.ScratchDirs.From, s.Binds.From = "", "", "", ""
		s.EnvPass.From, s.EnvDeny.From, s.Network.From, s.AllowSystemBinds.From = "", "", "", ""
		s.MaxImageSize.From, s.BatchLineWarning.From, s.JoinTimeout.From, s.NewKeyring.From = "", "", "", ""
		s.Criu.From = ""
		for i := range s.Binds.Value {
			s.Binds.Value[i].From = ""
		}
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("Render round trip:\n got %+v\nwant %+v\n%s", back, c, c.Render())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "64G": 64 << 30, "500M": 500 << 20, "2TiB": 2 << 40, "3gb": 3 << 30, " 7K ": 7 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got, _ := ParseSize(FormatSize(want)); got != want {
			t.Errorf("FormatSize(%d) = %q does not read back", want, FormatSize(want))
		}
	}
	for _, bad := range []string{"", "0", "-1G", "G", "1.5G", "1P", "99999999T"} {
		if n, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, n)
		}
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "---\n", "~\n"} {
		c, err := ParseConfig("f", []byte(in), SiteLayer, testVars)
		if err != nil || !reflect.DeepEqual(c, Config{}) {
			t.Errorf("ParseConfig(%q) = %+v, %v", in, c, err)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		in    string
		layer Layer
		want  string
	}{
		{"cahce: /x\n", SiteLayer, `f.yaml:1: unknown key "cahce" (known: cache,`},
		{"network: host\ncache: [a]\n", SiteLayer, "f.yaml:2: cache: want an absolute path, got a list"},
		{"cache: relative/dir\n", SiteLayer, `f.yaml:1: cache: want an absolute path, got "relative/dir"`},
		{"cache: 5\n", SiteLayer, "f.yaml:1: cache: want an absolute path, got a number"},
		{"cache: /x/$SLURM_JOB_ID\n", SiteLayer, "f.yaml:1: cache: unknown variable $SLURM_JOB_ID (only $USER, $UID and $HOME expand)"},
		{"cache: /x\ncache: /y\n", SiteLayer, "f.yaml:2: cache is set twice"},
		{"network: bridge\n", SiteLayer, `f.yaml:1: network: unknown network mode "bridge": want host or none`},
		{"network: [host]\n", SiteLayer, "f.yaml:1: network: want host or none, got a list"},
		{"allow_system_binds: yes please\n", SiteLayer, `f.yaml:1: allow_system_binds: want true or false, got "yes please"`},
		{"allow_system_binds: true\n", UserLayer, "f.yaml:1: allow_system_binds is the site's to set"},
		{"batch_line_warning: off\n", SiteLayer, `f.yaml:1: batch_line_warning: want true or false, got "off"`},
		{"new_keyring: yes please\n", UserLayer, `f.yaml:1: new_keyring: want true or false, got "yes please"`},
		{"scratch_dirs: /scratch\n", SiteLayer, "f.yaml:1: scratch_dirs: want a list of absolute paths, got \"/scratch\""},
		{"binds:\n  - /a:/b:rx\n", SiteLayer, `f.yaml:2: binds: bad bind "/a:/b:rx": unknown option "rx" (ro or rw); the form is SRC[:DST[:ro]]`},
		{"binds:\n  - {dst: /b}\n", SiteLayer, "f.yaml:2: binds: src is missing"},
		{"binds:\n  - {src: /a, mode: ro}\n", SiteLayer, `f.yaml:2: binds: unknown key "mode"`},
		{"binds:\n  - {src: /a, required: maybe}\n", SiteLayer, "f.yaml:2: binds: required: want true or false"},
		{"binds:\n  - a/b\n", SiteLayer, `f.yaml:2: binds: want absolute paths`},
		{"binds: {src: /a}\n", SiteLayer, "f.yaml:1: binds: want a list of binds, got a mapping"},
		{"env:\n  pass: [1BAD]\n", SiteLayer, `f.yaml:2: env: pass: want a NAME or a PREFIX*, got "1BAD"`},
		{"env:\n  allow: [X]\n", SiteLayer, `f.yaml:2: env: unknown key "allow" (known: pass, deny)`},
		{"env: [X]\n", SiteLayer, "f.yaml:1: env: want pass: and deny: lists, got a list"},
		{"- cache\n", SiteLayer, "f.yaml:1: want settings as key: value lines, got a list"},
		{"cache: /x\n  bad indent: 1\n", SiteLayer, "f.yaml:2: "},
		{"network: host\ncache: [/x\n", SiteLayer, "f.yaml:2: did not find expected ',' or ']'"},
		{"network: host\nscratch_dirs: [/x, ${y}]\n", SiteLayer, "f.yaml:2: did not find expected ',' or ']'"},
		{"\tcache: /x\n", SiteLayer, "f.yaml: found character that cannot start any token"},
		{"join_timeout: 90\n", SiteLayer, `f.yaml:1: bad join_timeout "90": want a duration from 1s to 24h`},
		{"join_timeout: 0s\n", SiteLayer, `f.yaml:1: bad join_timeout "0s"`},
		{"join_timeout: 48h\n", SiteLayer, `f.yaml:1: bad join_timeout "48h"`},
	}
	for _, tc := range tests {
		_, err := ParseConfig("f.yaml", []byte(tc.in), tc.layer, testVars)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q): err = %v, want it to start with %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseConfig(%q): a multi-line error: %q", tc.in, err)
		}
	}
}

// A config file's binds, in either form, are read by runtime's bind rules;
// an error names the file:line and the key.
func TestParseConfigBinds(t *testing.T) {
	tests := []struct {
		item    string
		layer   Layer
		want    Bind
		wantErr string
	}{
		{item: "/data", want: Bind{Bind: runtime.Bind{Source: "/data", Dest: "/data"}}},
		{item: "/data/:/mnt/", want: Bind{Bind: runtime.Bind{Source: "/data", Dest: "/mnt"}}},
		{item: "/data:/mnt:ro", want: Bind{Bind: runtime.Bind{Source: "/data", Dest: "/mnt", ReadOnly: true}}},
		{item: "/data:/mnt:rw", want: Bind{Bind: runtime.Bind{Source: "/data", Dest: "/mnt"}}},
		{item: "$HOME/d:/d", layer: UserLayer, want: Bind{Bind: runtime.Bind{Source: "/home/alice/d", Dest: "/d"}, User: true}},
		{item: "{src: /a}", want: Bind{Bind: runtime.Bind{Source: "/a", Dest: "/a"}}},
		{item: "{src: /a, dst: '', ro: true}", want: Bind{Bind: runtime.Bind{Source: "/a", Dest: "/a", ReadOnly: true}}},
		{item: "{src: '/x:y', dst: /z, required: true}", want: Bind{Bind: runtime.Bind{Source: "/x:y", Dest: "/z"}, Required: true}},
		{item: "{src: /u/$USER/, dst: /u}", want: Bind{Bind: runtime.Bind{Source: "/u/alice", Dest: "/u"}}},
		{item: "relative", wantErr: `f.yaml:2: binds: want absolute paths, got "relative"`},
		{item: "/a:relative", wantErr: `f.yaml:2: binds: bad bind "/a:relative": the destination must be an absolute path`},
		{item: "'/a:'", want: Bind{Bind: runtime.Bind{Source: "/a", Dest: "/a"}}}, // as config files always took it
		{item: "/a:/", wantErr: `f.yaml:2: binds: bad bind "/a:/": cannot bind over the container's /`},
		{item: "/a:/b:ro:x", wantErr: `f.yaml:2: binds: bad bind "/a:/b:ro:x": too many ':'`},
		{item: "/$NOPE", wantErr: `f.yaml:2: binds: unknown variable $NOPE`},
		{item: "{src: a}", wantErr: `f.yaml:2: binds: want absolute paths, got "a"`},
		{item: "{src: /a, dst: b}", wantErr: `f.yaml:2: binds: bad bind "/a:b": the destination must be an absolute path`},
		{item: "{src: /a, dst: /}", wantErr: `f.yaml:2: binds: bad bind "/a:/": cannot bind over the container's /`},
	}
	for _, tc := range tests {
		t.Run(tc.item, func(t *testing.T) {
			c, err := ParseConfig("f.yaml", []byte("binds:\n  - "+tc.item+"\n"), tc.layer, testVars)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to start with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.From = "f.yaml:2"
			if got := c.Binds.Value; len(got) != 1 || got[0] != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFromVariables(t *testing.T) {
	c, err := FromVariables([]string{
		"HPCRUN_CACHE=/c/", "HPCRUN_SCRATCH=/s", "HPCRUN_SCRATCH_DIRS=/a::/b", "HPCRUN_BINDS=/x, /y:/z:ro",
		"HPCRUN_ENV_PASS=A,B_*", "HPCRUN_ENV_DENY=", "HPCRUN_NETWORK=none", "HPCRUN_UNKNOWN=1",
		"HPCRUN_JOIN_TIMEOUT=90s",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Cache:       Setting[string]{"/c", "HPCRUN_CACHE"},
		Scratch:     Setting[string]{"/s", "HPCRUN_SCRATCH"},
		ScratchDirs: Setting[[]string]{[]string{"/a", "/b"}, "HPCRUN_SCRATCH_DIRS"},
		Binds: Setting[[]Bind]{[]Bind{
			{Bind: runtime.Bind{Source: "/x", Dest: "/x"}, User: true, From: "HPCRUN_BINDS"},
			{Bind: runtime.Bind{Source: "/y", Dest: "/z", ReadOnly: true}, User: true, From: "HPCRUN_BINDS"},
		}, "HPCRUN_BINDS"},
		EnvPass:     Setting[[]string]{[]string{"A", "B_*"}, "HPCRUN_ENV_PASS"},
		Network:     Setting[string]{"none", "HPCRUN_NETWORK"},
		JoinTimeout: Setting[time.Duration]{90 * time.Second, "HPCRUN_JOIN_TIMEOUT"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("FromVariables:\n got %+v\nwant %+v", c, want)
	}
	for _, bad := range []string{"HPCRUN_CACHE=rel", "HPCRUN_NETWORK=bridge", "HPCRUN_SCRATCH_DIRS=/a:b", "HPCRUN_BINDS=x:/y", "HPCRUN_BINDS=/x:y", "HPCRUN_BINDS=/x:/", "HPCRUN_ENV_PASS=A-B", "HPCRUN_JOIN_TIMEOUT=1ms"} {
		_, err := FromVariables([]string{bad})
		name, _, _ := strings.Cut(bad, "=")
		if err == nil || !strings.HasPrefix(err.Error(), bad+": want") {
			t.Errorf("FromVariables(%q): err = %v, want one naming %s", bad, err, name)
		}
	}
}

// The layers: site file, conf.d in name order, the user's file, then
// HPCRUN_* variables; a later one wins.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	write := func(p, s string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(dir, "etc", "config.yaml")
	write(site, "cache: /site/cache\nnetwork: none\nscratch: /site/scratch\nallow_system_binds: false\n")
	write(filepath.Join(dir, "etc", "conf.d", "20-b.yaml"), "scratch: /confd/b\n")
	write(filepath.Join(dir, "etc", "conf.d", "10-a.yaml"), "scratch: /confd/a\nscratch_dirs: [/lustre]\n")
	write(filepath.Join(dir, "etc", "conf.d", "ignored.yml"), "bogus: 1\n")
	write(filepath.Join(home, ".config", "hpcrun", "config.yaml"), "cache: $HOME/cache\n")
	env := []string{"HPCRUN_CONFIG=" + site, "HOME=" + home, "USER=alice", "HPCRUN_NETWORK=host"}
	l, err := LoadConfig(env, 1000)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	check := func(what, got, from, wantV, wantFrom string) {
		t.Helper()
		if got != wantV || from != wantFrom {
			t.Errorf("%s = %q from %q, want %q from %q", what, got, from, wantV, wantFrom)
		}
	}
	check("cache", c.Cache.Value, c.Cache.From, home+"/cache", filepath.Join(home, ".config/hpcrun/config.yaml")+":1")
	check("scratch", c.Scratch.Value, c.Scratch.From, "/confd/b", filepath.Join(dir, "etc/conf.d/20-b.yaml")+":1")
	check("network", c.Network.Value, c.Network.From, "host", "HPCRUN_NETWORK")
	check("scratch_dirs", strings.Join(c.ScratchDirs.Value, ","), c.ScratchDirs.From, "/lustre", filepath.Join(dir, "etc/conf.d/10-a.yaml")+":2")
	if c.AllowSystemBinds.Value || c.EnvPass.From != "default" {
		t.Errorf("allow_system_binds %+v, env pass %+v", c.AllowSystemBinds, c.EnvPass)
	}
	if len(l.Read) != 4 {
		t.Errorf("read %q, want the site file, two conf.d files and the user's", l.Read)
	}

	// $XDG_CONFIG_HOME moves the user's file; a bad one is reported with
	// its line; a named site file must exist.
	xdg := filepath.Join(dir, "xdg")
	write(filepath.Join(xdg, "hpcrun", "config.yaml"), "network: host\nnetwork: none\n")
	_, err = LoadConfig(append(env, "XDG_CONFIG_HOME="+xdg), 1000)
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(xdg, "hpcrun", "config.yaml")+":2: network is set twice") {
		t.Errorf("bad user file: %v", err)
	}
	_, err = LoadConfig([]string{"HPCRUN_CONFIG=" + filepath.Join(dir, "missing.yaml")}, 1000)
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing HPCRUN_CONFIG file: %v", err)
	}
	// No files at all: the defaults.
	l, err = LoadConfig([]string{"HOME=" + filepath.Join(dir, "nohome")}, 1000)
	if err != nil || !reflect.DeepEqual(l.Config, Defaults()) && l.Config.Network.Value != "host" {
		t.Errorf("no files: %+v, %v", l.Config, err)
	}
}

// The system dirs themselves are runtime's table (runtime.SystemDir).
func TestSystemBinds(t *testing.T) {
	c := Defaults()
	if err := c.CheckUserBind("/usr/lib"); err != nil {
		t.Errorf("allowed by default: %v", err)
	}
	c.AllowSystemBinds = Setting[bool]{false, "/etc/hpcrun/config.yaml:3"}
	if err := c.CheckUserBind("/usr/lib"); err == nil || !strings.Contains(err.Error(), "/etc/hpcrun/config.yaml:3") {
		t.Errorf("forbidden: %v", err)
	}
	if err := c.CheckUserBind("/home/u/lib"); err != nil {
		t.Errorf("a home dir: %v", err)
	}
}

func TestVarsExpand(t *testing.T) {
	for in, want := range map[string]string{
		"/a/$USER/b": "/a/alice/b", "/a/${USER}b": "/a/aliceb", "$HOME/x": "/home/alice/x", "/u$UID": "/u1000", "/plain": "/plain",
	} {
		if got, err := testVars.expand(in); err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/a/$", "/a/${USER", "/$PATH", "/${}"} {
		if got, err := testVars.expand(in); err == nil {
			t.Errorf("expand(%q) = %q, want an error", in, got)
		}
	}
	if _, err := (Vars{"USER": ""}).expand("/$USER"); err == nil || !strings.Contains(err.Error(), "$USER is not set") {
		t.Errorf("unset $USER: %v", err)
	}
}

// The example site config in examples/ is one hpcrun reads.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig("examples/config.yaml", b, SiteLayer, testVars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Scratch.Value == "" || len(c.Binds.Value) == 0 || len(c.EnvPass.Value) == 0 || !c.AllowSystemBinds.set() {
		t.Errorf("the example sets less than it shows: %+v", c)
	}
}
