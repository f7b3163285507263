package main

import (
	"context"
	"fmt"
	"io"
)

func runBench(ctx context.Context, out io.Writer, layerMiB int) error {
	return fmt.Errorf("not yet")
}

func runPullChild(ctx context.Context, spec string) error {
	return fmt.Errorf("not yet")
}
