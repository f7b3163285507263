// Package s3test gives tests a bucket of their own on a real S3-compatible
// object store: the SeaweedFS server that .ci/services/seaweedfs.sh starts
// on 127.0.0.1 (SWITCHBACK_S3, default http://127.0.0.1:19403), with no
// identities configured, so that requests are anonymous and devices read
// published files with plain GETs.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultEndpoint is where .ci/services/seaweedfs.sh serves the S3 API.
const DefaultEndpoint = "http://127.0.0.1:19403"

// Bucket is a fresh bucket on the store. Its objects are left behind: the
// store's data lives in a temporary directory the service script clears.
type Bucket struct {
	// Endpoint is the store's URL, e.g. "http://127.0.0.1:19403".
	Endpoint string
	// Name is the bucket's name.
	Name string
	// Client is an anonymous client of the store.
	Client *minio.Client
}

// New makes a bucket with a random name, or skips the test when no store
// answers (and fails it under CI=true, where .ci/run starts the store).
func New(t testing.TB) *Bucket {
	t.Helper()
	endpoint := os.Getenv("SWITCHBACK_S3")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	resp, err := http.Get(endpoint + "/")
	if err != nil {
		msg := "no S3 store at " + endpoint + " (start one with .ci/services/seaweedfs.sh): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	resp.Body.Close()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4("", "", "")})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "sb-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return &Bucket{Endpoint: endpoint, Name: name, Client: client}
}

// URL returns the plain HTTP URL of prefix in the bucket (path style), the
// base devices fetch from: URL("fleet") + "/metadata/".
func (b *Bucket) URL(prefix string) string {
	return b.Endpoint + "/" + b.Name + "/" + prefix
}

// S3URL returns "s3://<bucket>/<prefix>".
func (b *Bucket) S3URL(prefix string) string { return "s3://" + b.Name + "/" + prefix }

// Objects lists the bucket's objects under prefix, by key.
func (b *Bucket) Objects(t testing.TB, prefix string) map[string]minio.ObjectInfo {
	t.Helper()
	out := map[string]minio.ObjectInfo{}
	opts := minio.ListObjectsOptions{Prefix: prefix, Recursive: true}
	for obj := range b.Client.ListObjects(context.Background(), b.Name, opts) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out[obj.Key] = obj
	}
	return out
}
