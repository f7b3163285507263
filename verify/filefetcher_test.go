package verify

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestFileFetcher(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "1.root.json"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	fileURL := func(name string) string { return (&url.URL{Scheme: "file", Path: filepath.Join(dir, name)}).String() }
	var he *metadata.ErrDownloadHTTP
	tests := []struct {
		name  string
		url   string
		max   int64
		want  string
		check func(error) bool
	}{
		{"whole file", fileURL("1.root.json"), 5, "12345", nil},
		{"over the limit", fileURL("1.root.json"), 4, "", func(err error) bool { return errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) }},
		{"missing: 404 ends the root walk", fileURL("2.root.json"), 5, "", func(err error) bool { return errors.As(err, &he) && he.StatusCode == 404 }},
		{"localhost", "file://localhost" + filepath.Join(dir, "1.root.json"), 5, "12345", nil},
		{"another host", "file://elsewhere" + filepath.Join(dir, "1.root.json"), 5, "", func(err error) bool { return err != nil }},
		{"not a file URL", "http://example.com/1.root.json", 5, "", func(err error) bool { return err != nil }},
	}
	f := NewFileFetcher(context.Background())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.DownloadFile(tt.url, tt.max, 0)
			if tt.check == nil {
				if err != nil || string(got) != tt.want {
					t.Errorf("got %q, %v; want %q", got, err, tt.want)
				}
			} else if !tt.check(err) {
				t.Errorf("got %q, %v; want the error described", got, err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewFileFetcher(ctx).DownloadFile(fileURL("1.root.json"), 5, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
}
