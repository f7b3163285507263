package s3publish

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func TestPhaseOf(t *testing.T) {
	tests := []struct {
		rel  string
		want Phase
		bad  bool
	}{
		{rel: "targets/rootfs/1.2.0/0a1b.rootfs.img.zst", want: PhaseContent},
		{rel: "targets/chunks/ab/ab12.zst", want: PhaseContent},
		{rel: "targets/chunks/packs/ff.pack", want: PhaseContent},
		{rel: "metadata/3.targets.json", want: PhaseTargetsMetadata},
		{rel: "metadata/12.board-a.json", want: PhaseTargetsMetadata},
		{rel: "metadata/4.snapshot.json", want: PhaseSnapshotMetadata},
		{rel: "metadata/2.root.json", want: PhaseRootMetadata},
		{rel: "metadata/snapshot.json", want: PhaseSnapshot},
		{rel: "metadata/timestamp.json", want: PhaseTimestamp},
		{rel: "metadata/root.json", want: PhaseRoot},
		{rel: "metadata/3.timestamp.json", bad: true},
		{rel: "metadata/0.targets.json", bad: true},
		{rel: "metadata/03.targets.json", bad: true},
		{rel: "metadata/notes.txt", bad: true},
		{rel: "metadata/x.targets.json", bad: true},
		{rel: "staged/targets.json", bad: true},
		{rel: "repository.json", bad: true},
		{rel: "targets/../staged/x", bad: true},
		{rel: "targets/", bad: true},
	}
	for _, tt := range tests {
		got, err := PhaseOf(tt.rel)
		if tt.bad {
			if err == nil {
				t.Errorf("PhaseOf(%q) = %v, want an error", tt.rel, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("PhaseOf(%q) = %v, %v; want %v", tt.rel, got, err, tt.want)
		}
	}
}

func FuzzPhaseOf(f *testing.F) {
	for _, s := range []string{"targets/a/b", "metadata/1.root.json", "metadata/timestamp.json", "metadata/1.x.json", "a", "metadata/", "metadata/-1.targets.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		p, err := PhaseOf(rel)
		if err != nil {
			return
		}
		if p < 0 || p >= numPhases {
			t.Fatalf("PhaseOf(%q) = %d, out of range", rel, p)
		}
		if !strings.HasPrefix(rel, "metadata/") && !strings.HasPrefix(rel, "targets/") {
			t.Fatalf("PhaseOf(%q) accepted a file outside metadata/ and targets/", rel)
		}
	})
}

// multipartETag computes an S3 multipart ETag the long way, for checking
// digestOf.
func multipartETag(b []byte, part int) string {
	var sums []byte
	n := 0
	for off := 0; off < len(b); off += part {
		s := md5.Sum(b[off:min(off+part, len(b))])
		sums = append(sums, s[:]...)
		n++
	}
	s := md5.Sum(sums)
	return fmt.Sprintf("%s-%d", hex.EncodeToString(s[:]), n)
}

func TestDigestOf(t *testing.T) {
	const part = 8
	md5hex := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }
	tests := []struct {
		size int
		want func(b []byte) string
	}{
		{0, md5hex},
		{1, md5hex},
		{part, md5hex}, // one full part: a single PUT
		{part + 1, func(b []byte) string { return multipartETag(b, part) }},
		{2 * part, func(b []byte) string { return multipartETag(b, part) }},
		{5*part + 3, func(b []byte) string { return multipartETag(b, part) }},
	}
	for _, tt := range tests {
		b := image("digest", tt.size)
		d, err := digestOf(bytes.NewReader(b), part)
		if err != nil {
			t.Fatal(err)
		}
		if d.size != int64(tt.size) || d.etag != tt.want(b) {
			t.Errorf("size %d: digest = %d %s, want %d %s", tt.size, d.size, d.etag, tt.size, tt.want(b))
		}
	}
}

func TestDecide(t *testing.T) {
	local := digest{size: 3, etag: "900150983cd24fb0d6963f7d28e17f72"}
	tests := []struct {
		remote  remoteObject
		present bool
		want    decision
	}{
		{present: false, want: upload},
		{remote: remoteObject{size: 4, etag: local.etag}, present: true, want: upload},
		{remote: remoteObject{size: 3, etag: local.etag}, present: true, want: skip},
		{remote: remoteObject{size: 3, etag: `"900150983CD24FB0D6963F7D28E17F72"`}, present: true, want: skip},
		{remote: remoteObject{size: 3, etag: "0f343b0931126a20f133d67c2b018a3b"}, present: true, want: check},
	}
	for _, tt := range tests {
		if got := decide(local, tt.remote, tt.present); got != tt.want {
			t.Errorf("decide(%+v, present %v) = %v, want %v", tt.remote, tt.present, got, tt.want)
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, bucket, prefix string
		bad                bool
	}{
		{in: "s3://updates", bucket: "updates"},
		{in: "s3://updates/", bucket: "updates"},
		{in: "s3://updates/fleet/a/", bucket: "updates", prefix: "fleet/a"},
		{in: "s3:///x", bad: true},
		{in: "https://updates/x", bad: true},
		{in: "updates/x", bad: true},
		{in: "s3://up?dates/x", bad: true},
	}
	for _, tt := range tests {
		b, p, err := ParseURL(tt.in)
		if tt.bad != (err != nil) || b != tt.bucket || p != tt.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", tt.in, b, p, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://b/p", "s3://b", "s3:///", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, p, err := ParseURL(s)
		if err != nil {
			return
		}
		if b == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("ParseURL(%q) = %q, %q", s, b, p)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Endpoint: "https://s3.example.com", Bucket: "b"}
	tests := []struct {
		name string
		edit func(*Config)
		bad  bool
	}{
		{name: "https", edit: func(*Config) {}},
		{name: "http loopback", edit: func(c *Config) { c.Endpoint = "http://127.0.0.1:9000" }},
		{name: "http ::1", edit: func(c *Config) { c.Endpoint = "http://[::1]:9000" }},
		{name: "http localhost", edit: func(c *Config) { c.Endpoint = "http://localhost:9000" }},
		{name: "http remote", edit: func(c *Config) { c.Endpoint = "http://s3.example.com" }, bad: true},
		{name: "no scheme", edit: func(c *Config) { c.Endpoint = "s3.example.com" }, bad: true},
		{name: "path", edit: func(c *Config) { c.Endpoint = "https://s3.example.com/bucket" }, bad: true},
		{name: "ftp", edit: func(c *Config) { c.Endpoint = "ftp://s3.example.com" }, bad: true},
		{name: "no endpoint", edit: func(c *Config) { c.Endpoint = "" }, bad: true},
		{name: "no bucket", edit: func(c *Config) { c.Bucket = "" }, bad: true},
		{name: "small parts", edit: func(c *Config) { c.PartSize = 1 << 20 }, bad: true},
		{name: "negative concurrency", edit: func(c *Config) { c.Concurrency = -1 }, bad: true},
	}
	for _, tt := range tests {
		c := ok
		tt.edit(&c)
		if _, err := New(c); (err != nil) != tt.bad {
			t.Errorf("%s: New = %v, want error %v", tt.name, err, tt.bad)
		}
	}
}
