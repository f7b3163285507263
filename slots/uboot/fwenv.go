package uboot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Device is one copy of the environment, as a line of fw_env.config
// describes it: "DEVICE OFFSET ENVSIZE [SECTORSIZE [SECTORS]]".
type Device struct {
	// Path is the file or block device holding the copy.
	Path string
	// Offset is where the copy starts in Path, in bytes.
	Offset int64
	// EnvSize is the size of the copy, header included.
	EnvSize int
	// SectorSize and Sectors are the flash erase geometry; kept for
	// MTD devices, which this package does not write.
	SectorSize int64
	Sectors    int64
}

// ParseFwEnvConfig parses the classic fw_env.config format of U-Boot's
// tools and libubootenv: one or two (redundant) devices, one per line,
// fields separated by blanks, lines starting with '#' ignored. OFFSET is
// a C integer (decimal, 0x hexadecimal or 0 octal); ENVSIZE, SECTORSIZE
// and SECTORS are hexadecimal with or without 0x, as libubootenv reads
// them. A line with fewer than three fields is skipped, as libubootenv
// does; a field that does not parse is an error (where libubootenv's
// sscanf would quietly take a prefix). The YAML format of newer
// libubootenv is not supported.
func ParseFwEnvConfig(s string) ([]Device, error) {
	var devs []Device
	for n, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if len(devs) == 2 {
			return nil, fmt.Errorf("uboot: fw_env.config line %d: more than two devices", n+1)
		}
		d := Device{Path: f[0]}
		var err error
		if d.Offset, err = strconv.ParseInt(f[1], 0, 64); err != nil || d.Offset < 0 {
			return nil, fmt.Errorf("uboot: fw_env.config line %d: offset %q: want a non-negative integer", n+1, f[1])
		}
		size, err := parseHex(f[2])
		if err != nil || size == 0 || size > 64<<20 {
			return nil, fmt.Errorf("uboot: fw_env.config line %d: environment size %q: want hexadecimal, 1 to 0x4000000", n+1, f[2])
		}
		d.EnvSize = int(size)
		if len(f) > 3 {
			if d.SectorSize, err = parseHex(f[3]); err != nil {
				return nil, fmt.Errorf("uboot: fw_env.config line %d: sector size %q: want hexadecimal", n+1, f[3])
			}
		}
		if len(f) > 4 {
			if d.Sectors, err = parseHex(f[4]); err != nil {
				return nil, fmt.Errorf("uboot: fw_env.config line %d: sector count %q: want hexadecimal", n+1, f[4])
			}
		}
		devs = append(devs, d)
	}
	if len(devs) == 0 {
		return nil, errors.New("uboot: fw_env.config names no device (the YAML format is not supported)")
	}
	if len(devs) == 2 && devs[0].EnvSize != devs[1].EnvSize {
		return nil, fmt.Errorf("uboot: fw_env.config: the two copies differ in size (%#x, %#x)", devs[0].EnvSize, devs[1].EnvSize)
	}
	return devs, nil
}

func parseHex(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if t == "" {
		return 0, errors.New("empty")
	}
	// ParseUint: a sign is not hexadecimal; a negative size would be
	// taken for a huge one later.
	u, err := strconv.ParseUint(t, 16, 63)
	return int64(u), err
}

// FormatFwEnvConfig writes devices in the fw_env.config format.
func FormatFwEnvConfig(devs []Device) string {
	var b strings.Builder
	b.WriteString("# Device\tOffset\tEnv. size\tSector size\tSectors\n")
	for _, d := range devs {
		if strings.HasPrefix(d.Path, "#") {
			b.WriteByte(' ') // else the line reads as a comment
		}
		fmt.Fprintf(&b, "%s\t%#x\t%#x", d.Path, d.Offset, d.EnvSize)
		if d.SectorSize != 0 || d.Sectors != 0 {
			fmt.Fprintf(&b, "\t%#x", d.SectorSize)
		}
		if d.Sectors != 0 {
			fmt.Fprintf(&b, "\t%#x", d.Sectors)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
