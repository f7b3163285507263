package uboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Var is one variable of an environment, in stored order.
type Var struct {
	Name, Value string
}

// Errors callers branch on.
var (
	// ErrBadCRC is returned for a copy whose CRC32 does not match its
	// data: never written, or torn by a power cut.
	ErrBadCRC = errors.New("uboot: environment CRC mismatch")
	// ErrNoSpace is returned when the variables do not fit the
	// environment size.
	ErrNoSpace = errors.New("uboot: environment full")
	// ErrNoValidEnv is returned when no copy of the environment has a
	// valid CRC: U-Boot then runs with its built-in default environment.
	ErrNoValidEnv = errors.New("uboot: no valid environment copy")
)

// header is the size of the copy's header: the CRC32, and in a
// redundant copy the flags byte.
func header(redundant bool) int {
	if redundant {
		return 5
	}
	return 4
}

// Image is one decoded copy of the environment.
type Image struct {
	Vars []Var
	// Flags is the redundant copy's serial byte (0 for a single copy).
	Flags byte
}

// ParseImage decodes one copy: CRC32 (IEEE, little-endian) of the data
// area, the flags byte when redundant, then "name=value\0" strings up to
// an empty string. It fails with [ErrBadCRC] when the CRC does not match
// and with another error when the data is not terminated within the copy.
// Strings without '=' are skipped, as libubootenv does.
func ParseImage(b []byte, redundant bool) (Image, error) {
	h := header(redundant)
	if len(b) < h+2 {
		return Image{}, fmt.Errorf("uboot: environment copy of %d bytes, need at least %d", len(b), h+2)
	}
	data := b[h:]
	if got, want := crc32.ChecksumIEEE(data), binary.LittleEndian.Uint32(b); got != want {
		return Image{}, fmt.Errorf("uboot: stored CRC %08x, computed %08x: %w", want, got, ErrBadCRC)
	}
	img := Image{}
	if redundant {
		img.Flags = b[4]
	}
	for p := 0; ; {
		if p >= len(data) {
			return Image{}, errors.New("uboot: environment data not terminated by an empty string")
		}
		if data[p] == 0 {
			return img, nil
		}
		end := bytes.IndexByte(data[p:], 0)
		if end < 0 {
			return Image{}, errors.New("uboot: environment data not terminated by an empty string")
		}
		kv := string(data[p : p+end])
		p += end + 1
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		img.Vars = append(img.Vars, Var{Name: name, Value: value})
	}
}

// CheckVar reports whether a variable can be stored: a non-empty name
// without '=', and no NUL byte anywhere.
func CheckVar(name, value string) error {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return fmt.Errorf("uboot: invalid variable name %q", name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("uboot: value of %s contains a NUL byte", name)
	}
	return nil
}

// EncodeImage encodes one copy of size bytes: the variables in the given
// order, the terminating empty string, pad bytes up to size (mkenvimage
// pads with 0xff, U-Boot and libubootenv with 0x00), the CRC32 over
// everything after the header, and for a redundant copy the flags byte.
func EncodeImage(vars []Var, size int, redundant bool, flags byte, pad byte) ([]byte, error) {
	h := header(redundant)
	if size < h+2 {
		return nil, fmt.Errorf("uboot: environment size %d too small", size)
	}
	b := make([]byte, size)
	p := h
	for _, v := range vars {
		if err := CheckVar(v.Name, v.Value); err != nil {
			return nil, err
		}
		n := len(v.Name) + 1 + len(v.Value) + 1
		if p+n+1 > size {
			return nil, fmt.Errorf("uboot: %s does not fit in %d bytes: %w", v.Name, size, ErrNoSpace)
		}
		p += copy(b[p:], v.Name)
		b[p] = '='
		p++
		p += copy(b[p:], v.Value)
		b[p] = 0
		p++
	}
	b[p] = 0
	p++
	for i := p; i < size; i++ {
		b[i] = pad
	}
	if len(vars) == 0 {
		// An empty environment is two NULs, as libubootenv and U-Boot
		// read it ("\0" alone reads the same; keep the usual form).
		if p < size {
			b[p] = 0
		}
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[h:]))
	if redundant {
		b[4] = flags
	}
	return b, nil
}

// Set changes a variable in vars, or inserts it where libubootenv would:
// before the first variable whose name sorts after it. An empty value
// removes the variable, as "fw_setenv name" does.
func Set(vars []Var, name, value string) ([]Var, error) {
	if err := CheckVar(name, value); err != nil {
		return vars, err
	}
	for i := range vars {
		if vars[i].Name == name {
			if value == "" {
				return append(vars[:i:i], vars[i+1:]...), nil
			}
			out := append([]Var(nil), vars...)
			out[i].Value = value
			return out, nil
		}
	}
	if value == "" {
		return vars, nil
	}
	out := make([]Var, 0, len(vars)+1)
	inserted := false
	for _, v := range vars {
		if !inserted && v.Name > name {
			out = append(out, Var{name, value})
			inserted = true
		}
		out = append(out, v)
	}
	if !inserted {
		out = append(out, Var{name, value})
	}
	return out, nil
}

// get returns the value of name (the last occurrence).
func get(vars []Var, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range vars {
		if kv.Name == name {
			v, ok = kv.Value, true
		}
	}
	return v, ok
}

// pickCopy chooses the current copy of a redundant environment as
// libubootenv and U-Boot do with incrementing flags: the copy with a
// valid CRC; of two valid copies the one with the larger flags, where 0
// follows 255 (wrap-around) and equal flags choose the first.
func pickCopy(valid [2]bool, flags [2]byte) (int, bool) {
	switch {
	case valid[0] && !valid[1]:
		return 0, true
	case !valid[0] && valid[1]:
		return 1, true
	case !valid[0] && !valid[1]:
		return 0, false
	}
	switch {
	case flags[0] == 0xff && flags[1] == 0:
		return 1, true
	case flags[1] == 0xff && flags[0] == 0:
		return 0, true
	case flags[1] > flags[0]:
		return 1, true
	}
	return 0, true
}

// putCRC stores the CRC32 of b[h:] in b[0:4].
func putCRC(b []byte, h int) {
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[h:]))
}
