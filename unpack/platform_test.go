package unpack

import "testing"

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in   string
		want Platform
		bad  bool
	}{
		{in: "linux/amd64", want: Platform{OS: "linux", Architecture: "amd64", Variant: ""}},
		{in: "linux/arm64/v8", want: Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{in: "amd64", want: Platform{OS: "linux", Architecture: "amd64", Variant: ""}},
		{in: "Linux/X86_64", want: Platform{OS: "linux", Architecture: "amd64", Variant: ""}},
		{in: "linux/arm/v7", want: Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "", bad: true},
		{in: "linux/", bad: true},
		{in: "/amd64", bad: true},
		{in: "linux/arm/v7/extra", bad: true},
		{in: "linux/am d64", bad: true},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParsePlatform(%q) = %v, want an error", tt.in, got)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if h := HostPlatform(); h.OS == "" || h.Architecture == "" || (h.Architecture == "arm") != (h.Variant != "") {
		t.Errorf("HostPlatform() = %+v", h)
	}
}
