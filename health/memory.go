package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
)

// DefaultMeminfo is the file [MemoryFree] reads.
const DefaultMeminfo = "/proc/meminfo"

// maxMeminfo bounds how much of the meminfo file is read: the real one is
// about 1.5 KiB.
const maxMeminfo = 64 << 10

// MemoryOption configures the [MemoryFree] check. An [Option] is a
// MemoryOption.
type MemoryOption interface{ applyMemory(*memoryCheck) }

type memoryOption func(*memoryCheck)

func (o memoryOption) applyMemory(m *memoryCheck) { o(m) }
func (o Option) applyMemory(m *memoryCheck)       { o(&m.base) }

// WithMeminfo reads path instead of [DefaultMeminfo]: for tests, or a
// container's view of the host.
func WithMeminfo(path string) MemoryOption {
	return memoryOption(func(m *memoryCheck) { m.path = path })
}

type memoryCheck struct {
	base
	path string
	min  uint64
}

// MemoryFree returns a check that passes when the kernel's estimate of
// memory available for new work without swapping (MemAvailable in
// /proc/meminfo, Linux 3.14 and later) is at least minBytes. Its default
// name is "memory".
func MemoryFree(minBytes uint64, opts ...MemoryOption) HealthCheck {
	m := &memoryCheck{base: newBase("memory", DefaultTimeout), path: DefaultMeminfo, min: minBytes}
	for _, o := range opts {
		if o != nil {
			o.applyMemory(m)
		}
	}
	return m.finish(m.check)
}

func (m *memoryCheck) check(context.Context) error {
	f, err := os.Open(m.path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMeminfo+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", m.path, err)
	}
	if len(data) > maxMeminfo {
		return fmt.Errorf("%s: larger than %d bytes: not a meminfo file", m.path, maxMeminfo)
	}
	info, err := parseMeminfo(data)
	if err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	avail, ok := info["MemAvailable"]
	if !ok {
		return fmt.Errorf("%s has no MemAvailable field (Linux before 3.14?)", m.path)
	}
	if avail < m.min {
		return fmt.Errorf("%s of memory available, want at least %s", formatBytes(avail), formatBytes(m.min))
	}
	return nil
}

// parseMeminfo parses the text of /proc/meminfo: lines "Key:  value [kB]".
// Values in kB are returned in bytes, values without a unit as they are. A
// malformed line, an unknown unit, an overflowing value or a repeated key is
// an error; blank lines are skipped.
func parseMeminfo(data []byte) (map[string]uint64, error) {
	info := make(map[string]uint64)
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(key) == 0 || bytes.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("line %d: %q: want \"Key: value [kB]\"", n, line)
		}
		fields := bytes.Fields(rest)
		if len(fields) < 1 || len(fields) > 2 {
			return nil, fmt.Errorf("line %d: %q: want \"Key: value [kB]\"", n, line)
		}
		v, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n, line, err)
		}
		if len(fields) == 2 {
			if string(fields[1]) != "kB" {
				return nil, fmt.Errorf("line %d: %q: unknown unit %q", n, line, fields[1])
			}
			if v > math.MaxUint64/1024 {
				return nil, fmt.Errorf("line %d: %q: value out of range", n, line)
			}
			v *= 1024
		}
		k := string(key)
		if _, dup := info[k]; dup {
			return nil, fmt.Errorf("line %d: %s repeated", n, k)
		}
		info[k] = v
	}
	if len(info) == 0 {
		return nil, errors.New("empty meminfo")
	}
	return info, nil
}
