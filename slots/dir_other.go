//go:build !linux

package slots

import (
	"errors"
	"fmt"
)

// exchangeWithSymlink needs renameat2(RENAME_EXCHANGE), which only Linux
// has: elsewhere a factory directory must be moved into a slot by hand.
func exchangeWithSymlink(path, target, old string) error {
	return fmt.Errorf("replacing directory %s with a symlink: %w", path, errors.ErrUnsupported)
}
