package runtime

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestInitConfigRoundTrip(t *testing.T) {
	oomAdj := -500
	in := &initConfig{
		Rootfs: "/r", Args: []string{"python3", "-c", "print('é\\n')"}, Env: []string{"A=1", "EMPTY="},
		Cwd: "/work", UID: 1000, GID: 100, NoNewPrivs: true,
		Caps:    capSets{Bounding: 1<<40 | 3, Effective: 2, Permitted: 3, Inheritable: 0, Ambient: 1},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}, {Destination: "/x", Type: "bind", Source: "/y"}},
		Files:   []File{{Path: "/etc/passwd", Data: []byte("root:x:0:0::/:/bin/sh\n"), Mode: 0o644}},
		Unshare: 0x40000000, Hostname: "node", Writable: true, Foreground: true, Verbose: true,
		Start: time.Unix(1700000000, 123456789), StateDir: "/run/user/1000/hpcrun/job1", Terminal: true, Detached: true, AnchorFD: 6, Held: 2, WritableRoot: true,
		Rlimits: []rlimit{{Resource: 7, Soft: 1024, Hard: 4096}, {Resource: fenceResource}}, OOMScoreAdj: &oomAdj,
		MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}, Members: 3,
		Keyring: "_ses.hpcrun.0123456789abcdef", Hooks: `{"Sync":true,"Out":7}`, Seccomp: "2:AAAAAAAAAAA=",
		Sysctls: []string{"/proc/sys/net/ipv4/ip_forward=1"}, RootPropagation: 0x104000, // MS_SHARED|MS_REC
	}
	out, err := decodeInitConfig(in.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !out.Start.Equal(in.Start) {
		t.Errorf("start %v != %v", out.Start, in.Start)
	}
	out.Start = in.Start
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the config:\n in  %+v\n out %+v", in, out)
	}
}

func TestInitConfigGarbled(t *testing.T) {
	good := (&initConfig{Rootfs: "/r", Args: []string{"true"}, Cwd: "/"}).encode()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)/2],
		"trailing":  append(append([]byte{}, good...), 0),
		"huge len":  {0xff, 0xff, 0xff, 0xff, 0x0f},
		"no args":   (&initConfig{Rootfs: "/r", Cwd: "/"}).encode(),
	} {
		if _, err := decodeInitConfig(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestMessageFraming(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(message{Hooks: true}.encode())
	buf.Write(message{Stopped: true, Status: 20}.encode())
	buf.Write(message{Status: 143}.encode())
	buf.Write(message{Failed: true, Error: "python3: command not found", Code: 127, Errno: 2}.encode())
	if m, ok := readMessage(&buf); !ok || !m.Hooks || m.Failed || m.Ready || m.Stopped {
		t.Fatalf("hooks report = %+v, %v", m, ok)
	}
	m, ok := readMessage(&buf)
	if !ok || m.Hooks || !m.Stopped || m.Failed || m.Status != 20 {
		t.Fatalf("stop report = %+v, %v", m, ok)
	}
	m, ok = readMessage(&buf)
	if !ok || m.Failed || m.Stopped || m.Status != 143 {
		t.Fatalf("first = %+v, %v", m, ok)
	}
	m, ok = readMessage(&buf)
	if !ok || !m.Failed || m.Code != 127 || m.Errno != 2 || m.Error != "python3: command not found" {
		t.Fatalf("second = %+v, %v", m, ok)
	}
	if _, ok := readMessage(&buf); ok {
		t.Fatal("a report out of nothing")
	}
	if _, ok := readMessage(bytes.NewReader([]byte{9, 0, 0, 0, 1})); ok {
		t.Fatal("a truncated frame was taken for a report")
	}
}
