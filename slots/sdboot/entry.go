package sdboot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// EntryName is a Boot Loader Specification type #1 entry file name,
// "<id>[+LEFT[-DONE]].conf", split into its parts.
type EntryName struct {
	// ID is the entry's identifier: the file name without the counter,
	// ".conf" included, as systemd-boot and LoaderEntrySelected use it.
	ID string
	// Counting reports whether the name carries a boot counter.
	Counting bool
	// Left is the number of tries left; 0 marks the entry bad.
	Left int
	// Done is the number of tries done (-1 when the name has no -DONE).
	Done int
}

// maxCounter bounds the counters: systemd-boot counts in unsigned
// integers, entries use single digits.
const maxCounter = 1 << 20

// ParseEntryName parses a file name of loader/entries. Like systemd-boot,
// it takes the counter from after the last '+' when what follows is
// digits, optionally '-' and digits, up to ".conf"; anything else belongs
// to the ID. A name not ending in ".conf" (case-insensitive) is an error.
func ParseEntryName(name string) (EntryName, error) {
	if len(name) <= len(".conf") || !strings.EqualFold(name[len(name)-5:], ".conf") || strings.ContainsAny(name, "/\x00") {
		return EntryName{}, fmt.Errorf("sdboot: %q is not an entry file name (<id>[+LEFT[-DONE]].conf)", name)
	}
	stem, suffix := name[:len(name)-5], name[len(name)-5:]
	plus := strings.LastIndexByte(stem, '+')
	if plus < 0 {
		return EntryName{ID: name, Done: -1}, nil
	}
	left, done, ok := parseCounter(stem[plus+1:])
	if !ok {
		return EntryName{ID: name, Done: -1}, nil
	}
	if plus == 0 {
		return EntryName{}, fmt.Errorf("sdboot: %q has a counter but no id", name)
	}
	return EntryName{ID: stem[:plus] + suffix, Counting: true, Left: left, Done: done}, nil
}

func parseCounter(s string) (left, done int, ok bool) {
	l, d, hasDone := strings.Cut(s, "-")
	left, ok = parseDigits(l)
	if !ok {
		return 0, 0, false
	}
	done = -1
	if hasDone {
		if done, ok = parseDigits(d); !ok {
			return 0, 0, false
		}
	}
	return left, done, true
}

func parseDigits(s string) (int, bool) {
	if s == "" || len(s) > 7 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n < maxCounter
}

// String formats the name back into a file name.
func (e EntryName) String() string {
	if !e.Counting {
		return e.ID
	}
	stem, suffix := e.ID[:len(e.ID)-5], e.ID[len(e.ID)-5:]
	if e.Done < 0 {
		return fmt.Sprintf("%s+%d%s", stem, e.Left, suffix)
	}
	return fmt.Sprintf("%s+%d-%d%s", stem, e.Left, e.Done, suffix)
}

// Bad reports whether the entry has no tries left (systemd-bless-boot's
// "bad", or a trial that used up its tries).
func (e EntryName) Bad() bool { return e.Counting && e.Left == 0 }

// Blessed returns the name systemd-bless-boot gives a good entry: the
// counter dropped.
func (e EntryName) Blessed() EntryName { return EntryName{ID: e.ID, Done: -1} }

// Cursed returns the name systemd-bless-boot gives a bad entry: LEFT set
// to 0, DONE kept.
func (e EntryName) Cursed() EntryName {
	d := e.Done
	if !e.Counting {
		d = -1
	}
	return EntryName{ID: e.ID, Counting: true, Left: 0, Done: d}
}

// Tried returns the name systemd-boot gives the entry when it boots it:
// one try moved from LEFT to DONE. An entry without tries left keeps its
// name.
func (e EntryName) Tried() EntryName {
	if !e.Counting || e.Left == 0 {
		return e
	}
	d := e.Done
	if d < 0 {
		d = 0
	}
	return EntryName{ID: e.ID, Counting: true, Left: e.Left - 1, Done: d + 1}
}

var errNoEntry = errors.New("sdboot: no entry")
