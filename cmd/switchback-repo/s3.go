package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/repository/s3publish"
)

// s3Flags are publish's flags for uploading to an S3-compatible store.
type s3Flags struct {
	to, endpoint, region string
	prune                bool
	concurrency          int
}

func (f *s3Flags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.to, "to", "", "after publishing, upload the repository to `s3://bucket/prefix` "+
		"(targets first, timestamp.json and root.json last)")
	fs.StringVar(&f.endpoint, "endpoint", "", "S3 endpoint `URL` (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, "+
		"else https://s3.amazonaws.com); http:// only to a loopback address")
	fs.StringVar(&f.region, "region", "", "bucket region (default $AWS_REGION, $AWS_DEFAULT_REGION)")
	fs.BoolVar(&f.prune, "prune", false, "with -to: after the new timestamp is up, delete the objects "+
		"the repository no longer holds (run prune and prune-chunks first)")
	fs.IntVar(&f.concurrency, "concurrency", s3publish.DefaultConcurrency, "with -to: uploads at once")
}

// config builds the publisher's configuration from the flags and the
// usual AWS environment variables (credentials: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; none means anonymous).
func (f *s3Flags) config(stderr io.Writer) (s3publish.Config, error) {
	bucket, prefix, err := s3publish.ParseURL(f.to)
	if err != nil {
		return s3publish.Config{}, fmt.Errorf("%w: -to: %w", errUsage, err)
	}
	return s3publish.Config{
		Endpoint:     firstSet(f.endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"), "https://s3.amazonaws.com"),
		Bucket:       bucket,
		Prefix:       prefix,
		Region:       firstSet(f.region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")),
		AccessKey:    os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey:    os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: os.Getenv("AWS_SESSION_TOKEN"),
		Concurrency:  f.concurrency,
		Logger:       slog.New(slog.NewTextHandler(stderr, nil)),
	}, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// upload publishes r to the store the flags name and prints what it did.
func (f *s3Flags) upload(ctx context.Context, r *repository.Repo, stdout, stderr io.Writer) int {
	cfg, err := f.config(stderr)
	if err != nil {
		return fail(stderr, "publish", err)
	}
	p, err := s3publish.New(cfg)
	if err != nil {
		return fail(stderr, "publish", fmt.Errorf("%w: %w", errUsage, err))
	}
	res, err := p.Publish(ctx, r, s3publish.Options{Prune: f.prune})
	fmt.Fprintf(stdout, "%s: %d uploaded, %d already there, %d deleted\n", f.to, len(res.Uploaded), res.Skipped, len(res.Deleted))
	if err != nil {
		return fail(stderr, "publish", err)
	}
	return exitOK
}
