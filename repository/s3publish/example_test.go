package s3publish_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/repository/s3publish"
)

// Publish the repository in ./repo to s3://updates/fleet on Amazon S3,
// then delete what the repository's own prune removed. Devices use
// https://updates.s3.eu-west-1.amazonaws.com/fleet/metadata/ and
// .../targets/.
func Example() {
	ctx := context.Background()
	r, err := repository.Open(repository.Config{Dir: "repo"})
	if err != nil {
		log.Fatal(err)
	}
	p, err := s3publish.New(s3publish.Config{
		Endpoint:  "https://s3.eu-west-1.amazonaws.com",
		Region:    "eu-west-1",
		Bucket:    "updates",
		Prefix:    "fleet",
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := p.Publish(ctx, r, s3publish.Options{Prune: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d uploaded, %d already there, %d deleted\n", len(res.Uploaded), res.Skipped, len(res.Deleted))
}

func ExampleParseURL() {
	bucket, prefix, err := s3publish.ParseURL("s3://updates/fleet/eu/")
	fmt.Println(bucket, prefix, err)
	// Output: updates fleet/eu <nil>
}

func ExamplePhaseOf() {
	for _, f := range []string{"targets/rootfs/1.2.0/9f2c.rootfs.img", "metadata/4.snapshot.json", "metadata/timestamp.json", "metadata/root.json"} {
		p, _ := s3publish.PhaseOf(f)
		fmt.Printf("%d %s\n", p, p)
	}
	// Output:
	// 0 content
	// 2 snapshot-metadata
	// 5 timestamp
	// 6 root
}
