package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// TestContainers runs the example's scenario: v1 runs, v2 moves one
// layer, v3 (layer swapped in the registry) is refused, v4 (crashes on
// start) is rolled back and blocklisted. It needs root and the Debian
// packages of .ci/packages: it skips without them, and fails under CI=true.
func TestContainers(t *testing.T) {
	if err := needTools(); err != nil {
		ci.Skipf(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("containers: %v\ntranscript:\n%s", err, out.String())
	}
	for _, want := range []string{
		"the container runs app 1.0.0",
		"2 blobs were already here",
		"refused: ",
		"digest mismatch",
		"v4 failed its check and was rolled back",
		"v4 is blocklisted",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
}
