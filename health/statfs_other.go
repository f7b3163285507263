//go:build !linux

package health

import (
	"errors"
	"fmt"
	"runtime"
)

func availableBytes(string) (uint64, error) {
	return 0, fmt.Errorf("statfs on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
