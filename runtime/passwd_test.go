package runtime

import (
	"strings"
	"testing"
)

func TestPasswdWith(t *testing.T) {
	alice := Identity{User: "alice", UID: 1000, Group: "hpc", GID: 500, Gecos: "Alice", Home: "/home/alice", Shell: "/bin/bash"}
	tests := []struct {
		name, image, want string
	}{
		{"appends", "root:x:0:0:root:/root:/bin/bash\n",
			"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:500:Alice:/home/alice:/bin/bash\n"},
		{"no file in the image", "", "alice:x:1000:500:Alice:/home/alice:/bin/bash\n"},
		{"drops the image's user with the same uid", "root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/sh\n",
			"root:x:0:0::/root:/bin/sh\nalice:x:1000:500:Alice:/home/alice:/bin/bash\n"},
		{"drops the image's user with the same name", "alice:x:2000:2000::/x:/bin/sh\nbob:x:3:3::/:/bin/sh",
			"bob:x:3:3::/:/bin/sh\nalice:x:1000:500:Alice:/home/alice:/bin/bash\n"},
		{"keeps comments and a line with no newline", "# c\nroot:x:0:0::/root:/bin/sh",
			"# c\nroot:x:0:0::/root:/bin/sh\nalice:x:1000:500:Alice:/home/alice:/bin/bash\n"},
	}
	for _, tc := range tests {
		if got := string(PasswdWith([]byte(tc.image), alice)); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
	g := string(GroupWith([]byte("root:x:0:\nusers:x:500:bob\n"), alice))
	if g != "root:x:0:\nhpc:x:500:\n" {
		t.Errorf("group = %q", g)
	}
}

func TestHasIDAndLookup(t *testing.T) {
	db := []byte("root:x:0:0:root:/root:/bin/sh\n#x:x:7\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
	if !HasID(db, 0) || !HasID(db, 65534) || HasID(db, 7) || HasID(db, 1) {
		t.Error("HasID is wrong")
	}
	if f := lookupEntry(db, 65534); len(f) != 7 || f[0] != "nobody" || f[5] != "/nonexistent" {
		t.Errorf("lookupEntry = %v", f)
	}
	if f := lookupEntry(db, 5); f != nil {
		t.Errorf("lookupEntry(5) = %v", f)
	}
}

func TestLookupIdentityFallsBackToEnv(t *testing.T) {
	// A uid no database knows: names come from the environment.
	id := LookupIdentity(3999999, 3999998, []string{"USER=ldapuser", "HOME=/home/ldapuser"})
	if id.User != "ldapuser" || id.Home != "/home/ldapuser" || id.Group != "group3999998" || id.Shell != "/bin/sh" {
		t.Errorf("got %+v", id)
	}
	id = LookupIdentity(3999999, 3999998, nil)
	if id.User != "user3999999" || !strings.HasPrefix(id.Group, "group") {
		t.Errorf("got %+v", id)
	}
}
