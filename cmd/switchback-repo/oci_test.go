package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// pushTestImage pushes a one-blob image to the registry of
// .ci/services/registry.sh (skipping outside CI when none answers) and
// returns the host.
func pushTestImage(t *testing.T, repo, tag string) string {
	t.Helper()
	host := os.Getenv("SWITCHBACK_REGISTRY")
	if host == "" {
		host = "127.0.0.1:15000"
	}
	if res, err := http.Get("http://" + host + "/v2/"); err != nil || res.StatusCode != http.StatusOK {
		ci.Skipf(t, "no registry at %s (.ci/services/registry.sh): %v", host, err)
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","created":%q}`, time.Now().Format(time.RFC3339Nano)))
	sum := sha256.Sum256(cfg)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	res, err := http.Post("http://"+host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + host + loc
	}
	put := func(url, ctype string, body []byte) {
		req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %v %v", url, res.Status, err)
		}
		res.Body.Close()
	}
	put(loc+"&digest="+digest, "application/octet-stream", cfg)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`, digest, len(cfg))
	put("http://"+host+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", []byte(m))
	return host
}

func TestAddOCICommand(t *testing.T) {
	host := pushTestImage(t, "test/cmd-add-oci", "v1")
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	out := sb(t, exitOK, "add-oci", "-repo", repo, "-keys", keys, "-component", "app", "-version", "1.0.0",
		"-hardware", "pc", "-registry", host, "test/cmd-add-oci:v1")
	if !strings.Contains(out, "added app/1.0.0/manifest.json") {
		t.Errorf("add-oci said %q", out)
	}
	out = sb(t, exitOK, "list", "-repo", repo, "-keys", keys)
	if !strings.Contains(out, "app/1.0.0/manifest.json") {
		t.Errorf("list does not show the image: %q", out)
	}
	sb(t, exitUsage, "add-oci", "-repo", repo, "-keys", keys, "-component", "app", "-version", "1.0.1", "-registry", host, "no-tag")
}
