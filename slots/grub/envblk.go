package grub

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Header is the first line of every GRUB environment block.
const Header = "# GRUB Environment Block\n"

// BlockSize is the size of the environment block grub-editenv creates and
// GRUB's save_env rewrites in place.
const BlockSize = 1024

// maxBlock bounds what Parse accepts; GRUB reads the whole file, real
// blocks are 1 KiB.
const maxBlock = 1 << 20

// ErrNoSpace is returned when a change does not fit the block: GRUB never
// grows the file (save_env rewrites its sectors in place), so neither do
// we.
var ErrNoSpace = errors.New("grub: environment block full")

// Var is one variable of an environment block, in file order.
type Var struct {
	Name, Value string
}

// Env is a GRUB environment block: the raw bytes, edited the way GRUB's
// envblk.c edits them (a changed variable keeps its place, a new one is
// appended, a removed one closes up, '#' fills the tail), so that our
// writes are byte for byte what grub-editenv writes for the same change.
type Env struct {
	buf []byte
}

// NewEnv returns an empty block of size bytes (normally [BlockSize]): the
// header and '#' padding, as "grub-editenv FILE create" writes it
// upstream.
func NewEnv(size int) (*Env, error) {
	if size < len(Header)+1 || size > maxBlock {
		return nil, fmt.Errorf("grub: block size %d out of range [%d, %d]", size, len(Header)+1, maxBlock)
	}
	b := bytes.Repeat([]byte{'#'}, size)
	copy(b, Header)
	return &Env{buf: b}, nil
}

// Parse reads an environment block. It fails on a missing header or an
// unreasonable size. A damaged tail (a line without '=' or newline, as a
// torn write may leave) is not an error: like GRUB, Parse stops there, and
// [Env.Vars] returns what came before.
func Parse(b []byte) (*Env, error) {
	if len(b) > maxBlock {
		return nil, fmt.Errorf("grub: environment block of %d bytes, more than %d", len(b), maxBlock)
	}
	if len(b) <= len(Header) || !bytes.HasPrefix(b, []byte(Header)) {
		return nil, fmt.Errorf("grub: not an environment block: want it to start with %q", Header)
	}
	return &Env{buf: bytes.Clone(b)}, nil
}

// Encode returns the block's bytes.
func (e *Env) Encode() []byte { return bytes.Clone(e.buf) }

// Size returns the block's size in bytes.
func (e *Env) Size() int { return len(e.buf) }

// nextLine returns the index after the end of the line starting at p,
// honouring backslash escapes as GRUB's find_next_line does.
func (e *Env) nextLine(p int) int {
	for p < len(e.buf) {
		switch e.buf[p] {
		case '\\':
			p += 2
			continue
		case '\n':
			return p + 1
		}
		p++
	}
	return p + 1
}

// valueEnd returns the index of the newline ending the value starting at
// p, or -1 when the block ends first (a damaged tail).
func (e *Env) valueEnd(p int) int {
	for p < len(e.buf) {
		switch e.buf[p] {
		case '\n':
			return p
		case '\\':
			p += 2
			continue
		}
		p++
	}
	return -1
}

// Vars returns the variables in file order, as GRUB's load_env sees them.
// Comment lines are skipped; a damaged tail ends the list.
func (e *Env) Vars() []Var {
	var out []Var
	p := len(Header)
	for p < len(e.buf) {
		if e.buf[p] != '#' {
			eq := bytes.IndexByte(e.buf[p:], '=')
			if eq < 0 {
				return out
			}
			name := string(e.buf[p : p+eq])
			vs := p + eq + 1
			end := e.valueEnd(vs)
			if end < 0 {
				return out
			}
			out = append(out, Var{Name: name, Value: unescape(e.buf[vs:end])})
			p = end
		}
		p = e.nextLine(p)
	}
	return out
}

// Get returns the value GRUB ends up with for name: the last occurrence.
func (e *Env) Get(name string) (string, bool) {
	v, ok := "", false
	for _, kv := range e.Vars() {
		if kv.Name == name {
			v, ok = kv.Value, true
		}
	}
	return v, ok
}

// Map returns the variables as a map (later occurrences win).
func (e *Env) Map() map[string]string {
	m := make(map[string]string)
	for _, kv := range e.Vars() {
		m[kv.Name] = kv.Value
	}
	return m
}

func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var s strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			i++
		}
		s.WriteByte(b[i])
	}
	return s.String()
}

func escape(v string) string {
	if !strings.ContainsAny(v, "\\\n") {
		return v
	}
	var s strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' || v[i] == '\n' {
			s.WriteByte('\\')
		}
		s.WriteByte(v[i])
	}
	return s.String()
}

// CheckName reports whether name can be stored: not empty, no '=', no
// newline, NUL or backslash, not starting with '#' (a comment to GRUB).
func CheckName(name string) error {
	if name == "" || strings.ContainsAny(name, "=\n\x00\\") || name[0] == '#' {
		return fmt.Errorf("grub: invalid variable name %q", name)
	}
	return nil
}

// findLine returns the start of the first line defining name, or -1. It
// looks only where GRUB looks: at line starts before limit.
func (e *Env) findLine(name string, limit int) int {
	p := len(Header)
	for p+len(name)+1 < limit {
		if bytes.HasPrefix(e.buf[p:], []byte(name)) && e.buf[p+len(name)] == '=' {
			return p
		}
		p = e.nextLine(p)
	}
	return -1
}

// freeSpace returns where the '#' padding at the end starts, or -1 when
// the block does not end with a newline before its padding (damaged).
func (e *Env) freeSpace() int {
	s := len(e.buf) - 1
	for s >= 0 && e.buf[s] == '#' {
		s--
	}
	if s < 0 || e.buf[s] != '\n' {
		return -1
	}
	return s + 1
}

// Set sets name to value in place, as grub-editenv does: an existing
// variable keeps its place (later duplicates, which only damage leaves,
// are removed so that GRUB sees the new value), a new one is appended.
// It fails with [ErrNoSpace] when the block is full, and on a damaged
// block (see [Env.Repair]).
func (e *Env) Set(name, value string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("grub: value of %s contains a NUL byte", name)
	}
	space := e.freeSpace()
	if space < 0 {
		return fmt.Errorf("grub: damaged environment block: no newline before the padding")
	}
	ev := escape(value)
	p := e.findLine(name, space)
	if p < 0 {
		need := len(name) + 1 + len(ev) + 1
		if len(e.buf)-space < need {
			return fmt.Errorf("grub: set %s: %d bytes needed, %d free: %w", name, need, len(e.buf)-space, ErrNoSpace)
		}
		copy(e.buf[space:], name+"="+ev+"\n")
		return nil
	}
	vs := p + len(name) + 1
	end := e.valueEnd(vs)
	if end < 0 {
		return fmt.Errorf("grub: damaged environment block: value of %s not terminated", name)
	}
	old := end - vs
	grow := len(ev) - old
	if grow > len(e.buf)-space {
		return fmt.Errorf("grub: set %s: %d more bytes needed, %d free: %w", name, grow, len(e.buf)-space, ErrNoSpace)
	}
	switch {
	case grow < 0:
		copy(e.buf[vs+len(ev):], e.buf[end:])
		for i := space + grow; i < space; i++ {
			e.buf[i] = '#'
		}
	case grow > 0:
		copy(e.buf[vs+len(ev):], e.buf[end:len(e.buf)-grow])
	}
	copy(e.buf[vs:], ev)
	// Duplicates after the first make GRUB see another value: drop them.
	for {
		space = e.freeSpace()
		q := e.findDup(name, vs+len(ev)+1, space)
		if q < 0 {
			return nil
		}
		e.deleteAt(q, name)
	}
}

// findDup is findLine starting at from.
func (e *Env) findDup(name string, from, limit int) int {
	p := from
	for p+len(name)+1 < limit {
		if bytes.HasPrefix(e.buf[p:], []byte(name)) && e.buf[p+len(name)] == '=' {
			return p
		}
		p = e.nextLine(p)
	}
	return -1
}

// Unset removes name, as "grub-editenv FILE unset" does (every
// occurrence, so that GRUB does not see a stale duplicate).
func (e *Env) Unset(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	for {
		p := e.findLine(name, len(e.buf))
		if p < 0 {
			return nil
		}
		if !e.deleteAt(p, name) {
			return fmt.Errorf("grub: damaged environment block: value of %s not terminated", name)
		}
	}
}

func (e *Env) deleteAt(p int, name string) bool {
	end := e.valueEnd(p + len(name) + 1)
	if end < 0 {
		return false
	}
	n := end + 1 - p
	copy(e.buf[p:], e.buf[end+1:])
	for i := len(e.buf) - n; i < len(e.buf); i++ {
		e.buf[i] = '#'
	}
	return true
}

// Damaged reports whether the block is not one GRUB can edit: a variable
// without its terminating newline, or no newline before the padding.
func (e *Env) Damaged() bool {
	if e.freeSpace() < 0 {
		return true
	}
	p := len(Header)
	for p < len(e.buf) {
		if e.buf[p] != '#' {
			eq := bytes.IndexByte(e.buf[p:], '=')
			if eq < 0 {
				return true
			}
			end := e.valueEnd(p + eq + 1)
			if end < 0 {
				return true
			}
			p = end
		}
		p = e.nextLine(p)
	}
	return false
}

// Repair rewrites a damaged block from the variables GRUB still sees
// (header, those variables in order, '#' padding), dropping the damaged
// tail. An undamaged block is left alone.
func (e *Env) Repair() error {
	if !e.Damaged() {
		return nil
	}
	vars := e.Vars()
	fresh, err := NewEnv(len(e.buf))
	if err != nil {
		return err
	}
	for _, kv := range vars {
		if CheckName(kv.Name) != nil {
			continue // damage, not a variable anyone set
		}
		if err := fresh.Set(kv.Name, kv.Value); err != nil {
			return err
		}
	}
	e.buf = fresh.buf
	return nil
}
