package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestQuickstart runs the README's demo scenario: commit, refuse a
// tampered release, roll back an unhealthy one without retrying it.
func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("quickstart: %v\ntranscript:\n%s", err, out.String())
	}
	for _, want := range []string{
		"1.1.0 confirming → committed",
		"tampered v1.1.1 refused before activation",
		"1.2.0 confirming → rolled-back",
		"v1.2.0 is not retried",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
}
