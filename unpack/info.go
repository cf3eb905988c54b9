package unpack

import "time"

// ImageInfo is what hpcrun inspect shows of an image. The unpacker
// (cmd/hpcrun-unpack, which reads images) writes it as JSON and hpcrun
// formats it; `hpcrun inspect --format json` prints it as it is, so its
// field names are stable: scripts read them. Lists and labels are empty,
// never null.
type ImageInfo struct {
	Ref          string            `json:"ref"`           // as the user named it
	Digest       string            `json:"digest"`        // the manifest digest, the cache's key
	ConfigDigest string            `json:"config_digest"` // "" when the image has no config blob
	Platform     string            `json:"platform"`      // os/arch[/variant]
	Created      *time.Time        `json:"created"`       // nil when the image does not say
	Size         int64             `json:"size"`          // the layers' sizes added up, as stored
	Layers       []LayerInfo       `json:"layers"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd"`
	Env          []string          `json:"env"`
	WorkingDir   string            `json:"working_dir"`
	User         string            `json:"user"`
	Labels       map[string]string `json:"labels"`
	// Cached is where this node's cache holds the image unpacked; nil
	// when it does not.
	Cached *CachedInfo `json:"cached"`
	// Partial says that only the cache's record of the image was found
	// (its source is gone): no layers, labels or creation time.
	Partial bool `json:"partial"`
}

// LayerInfo is one layer of an image.
type LayerInfo struct {
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"` // as stored: compressed when the media type says so
	// Uncompressed is the layer's size as a tar, where the image tells it
	// (an uncompressed layer); nil where only unpacking it would.
	Uncompressed *int64 `json:"uncompressed_size"`
}

// CachedInfo is an image unpacked in the cache.
type CachedInfo struct {
	Dir     string    `json:"dir"`      // the image's directory; its root filesystem is Dir/rootfs
	Size    int64     `json:"size"`     // bytes on disk, hardlinks counted once
	LastUse time.Time `json:"last_use"` // the last job start or unpack that used it
	Damaged bool      `json:"damaged"`  // a temp cleaner removed files of it
}
