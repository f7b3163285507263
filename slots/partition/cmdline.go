package partition

import (
	"errors"
	"fmt"
	"strings"
)

// Param is one kernel command line parameter. A parameter without '='
// (a flag such as "quiet") has an empty Value and HasValue false.
type Param struct {
	Key      string
	Value    string
	HasValue bool
}

// Cmdline is a parsed kernel command line, in order.
type Cmdline []Param

// Get returns the value of the last parameter named key, as the kernel
// does for repeated parameters such as root=, and whether it is present.
func (c Cmdline) Get(key string) (string, bool) {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Key == key {
			return c[i].Value, true
		}
	}
	return "", false
}

// maxCmdline bounds what ParseCmdline accepts: Linux limits the command
// line to COMMAND_LINE_SIZE, at most a few KiB on every architecture.
const maxCmdline = 64 << 10

// ParseCmdline parses a kernel command line (the content of /proc/cmdline)
// the way the kernel's next_arg does: parameters are separated by
// whitespace; double quotes group whitespace into one parameter and are
// removed; "--" ends the kernel's parameters (what follows is for init and
// is not returned). It fails only on input no kernel produces: a NUL byte,
// an unterminated quote, or more than 64 KiB.
func ParseCmdline(s string) (Cmdline, error) {
	if len(s) > maxCmdline {
		return nil, fmt.Errorf("partition: kernel command line of %d bytes, more than %d", len(s), maxCmdline)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("partition: kernel command line contains a NUL byte")
	}
	var out Cmdline
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		// One parameter: up to unquoted whitespace.
		var b strings.Builder
		quoted := false
		eq := -1 // index in b of the first unquoted-or-quoted '=', as the kernel
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				quoted = !quoted
				continue
			}
			if !quoted && isSpace(c) {
				break
			}
			if c == '=' && eq < 0 {
				eq = b.Len()
			}
			b.WriteByte(c)
		}
		if quoted {
			return nil, errors.New("partition: kernel command line has an unterminated quote")
		}
		arg := b.String()
		if arg == "--" {
			return out, nil
		}
		if arg == "" {
			continue // `""`: nothing
		}
		if eq < 0 {
			out = append(out, Param{Key: arg})
			continue
		}
		out = append(out, Param{Key: arg[:eq], Value: arg[eq+1:], HasValue: true})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// RootSpec is how a root= parameter names the root device.
type RootSpec struct {
	// Kind is "path" (root=/dev/sda2), "partuuid" (root=PARTUUID=...),
	// "partlabel" (root=PARTLABEL=...), or another upper-case tag the
	// kernel or an initramfs understands, lower-cased ("uuid", "label").
	Kind string
	// Value is the path, PARTUUID or label.
	Value string
}

// ParseRoot parses the value of a root= kernel parameter.
func ParseRoot(v string) (RootSpec, error) {
	if v == "" {
		return RootSpec{}, errors.New("partition: empty root= parameter")
	}
	if strings.HasPrefix(v, "/") {
		return RootSpec{Kind: "path", Value: v}, nil
	}
	tag, val, ok := strings.Cut(v, "=")
	if !ok || tag == "" || val == "" {
		return RootSpec{}, fmt.Errorf("partition: root=%q is neither a device path nor TAG=value", v)
	}
	kind := strings.ToLower(tag)
	if kind == "partuuid" {
		// The kernel accepts PARTUUID=<uuid>/PARTNROFF=<n>; an offset
		// names another partition, which switchback does not resolve.
		if strings.Contains(val, "/") {
			return RootSpec{}, fmt.Errorf("partition: root=%q: PARTNROFF is not supported", v)
		}
		val = strings.ToLower(val)
	}
	return RootSpec{Kind: kind, Value: val}, nil
}
