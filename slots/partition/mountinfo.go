package partition

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo, the fields switchback uses.
type Mount struct {
	Major, Minor int    // st_dev of the mounted filesystem
	Root         string // root of the mount within the filesystem
	MountPoint   string // where it is mounted
	FSType       string
	Source       string // e.g. /dev/sda2, or "overlay", "/dev/root"
}

// ParseMountInfo parses the content of /proc/<pid>/mountinfo (see
// proc(5)). Octal escapes (\040 for a space) are decoded. A malformed line
// is an error naming the line.
func ParseMountInfo(data string) ([]Mount, error) {
	var out []Mount
	for n, line := range strings.Split(data, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("partition: mountinfo line %d: %w", n+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseMountLine(line string) (Mount, error) {
	f := strings.Fields(line)
	// id parent major:minor root mountpoint options [optional...] - fstype source superopts
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 {
		return Mount{}, errors.New("no '-' separator after six fields")
	}
	if sep+2 >= len(f) {
		return Mount{}, errors.New("too few fields after '-'")
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return Mount{}, fmt.Errorf("bad major:minor %q", f[2])
	}
	ma, err1 := strconv.Atoi(maj)
	mi, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || ma < 0 || mi < 0 {
		return Mount{}, fmt.Errorf("bad major:minor %q", f[2])
	}
	return Mount{
		Major: ma, Minor: mi,
		Root:       unescapeOctal(f[3]),
		MountPoint: unescapeOctal(f[4]),
		FSType:     f[sep+1],
		Source:     unescapeOctal(f[sep+2]),
	}, nil
}

// unescapeOctal decodes the \ooo escapes the kernel uses for space, tab,
// newline and backslash in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }

// RootMount returns the mount of "/" that is visible last (the one on
// top), or false when there is none.
func RootMount(mounts []Mount) (Mount, bool) {
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].MountPoint == "/" {
			return mounts[i], true
		}
	}
	return Mount{}, false
}
