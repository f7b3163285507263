package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// FileExists returns a check that passes when path exists (a file of any
// type, or a directory). Its default name is "file:" + path.
func FileExists(path string, opts ...Option) HealthCheck {
	b := newBase("file:"+path, DefaultTimeout)
	applyOptions(&b, opts)
	return b.finish(func(context.Context) error {
		_, err := stat(path)
		return err
	})
}

// SocketExists returns a check that passes when path exists and is a Unix
// socket — a service's control socket, say. It does not connect to it. Its
// default name is "socket:" + path.
func SocketExists(path string, opts ...Option) HealthCheck {
	b := newBase("socket:"+path, DefaultTimeout)
	applyOptions(&b, opts)
	return b.finish(func(context.Context) error {
		fi, err := stat(path)
		if err != nil {
			return err
		}
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("%s exists but is %s, not a socket", path, kind(fi.Mode()))
		}
		return nil
	})
}

func stat(path string) (fs.FileInfo, error) {
	if path == "" {
		return nil, errors.New("no path given")
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: %w", path, err)
	}
	return fi, err
}

func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice:
		return "a block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	default:
		return "a " + m.Type().String() + " file"
	}
}

// DiskFree returns a check that passes when the file system holding path
// has at least minBytes available to unprivileged users (statfs f_bavail).
// Its default name is "disk:" + path.
func DiskFree(path string, minBytes uint64, opts ...Option) HealthCheck {
	b := newBase("disk:"+path, DefaultTimeout)
	applyOptions(&b, opts)
	return b.finish(func(context.Context) error {
		if path == "" {
			return errors.New("no path given")
		}
		avail, err := availableBytes(path)
		if err != nil {
			return fmt.Errorf("free space on %s: %w", path, err)
		}
		if avail < minBytes {
			return fmt.Errorf("%s free on %s, want at least %s", formatBytes(avail), path, formatBytes(minBytes))
		}
		return nil
	})
}

// formatBytes writes n in binary units, exact below 1 KiB.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
