package sdboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/partition"
)

// The sort keys switchback gives its entries. systemd-boot orders entries
// with a sort key by it, ascending, before those without; entries with no
// tries left go last. So the trial boots first while it has tries, then
// the primary; other slots come after both.
const (
	SortKeyTrial   = "switchback-0-trial"
	SortKeyPrimary = "switchback-1-primary"
	SortKeyOther   = "switchback-2-other"
)

// LoaderGUID is the vendor GUID of systemd-boot's EFI variables.
const LoaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// Config describes the ESP and the slots' entries.
type Config struct {
	// ESP is where the EFI system partition (or XBOOTLDR) is mounted:
	// the directory holding loader/loader.conf and loader/entries.
	ESP string
	// Slots are the slot names. Slot s boots the entry
	// loader/entries/<EntryPrefix><s>.conf (with or without a counter).
	Slots []string
	// EntryPrefix defaults to "switchback-".
	EntryPrefix string
	// EFIVarsDir is where efivarfs is mounted; default
	// /sys/firmware/efi/efivars. LoaderEntrySelected there names the
	// booted entry.
	EFIVarsDir string
	// CmdlinePath is read for switchback.slot= when LoaderEntrySelected
	// is missing; default /proc/cmdline.
	CmdlinePath string
}

var slotName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (c *Config) validate() error {
	if c.ESP == "" {
		return errors.New("sdboot: Config.ESP is empty")
	}
	if len(c.Slots) < 2 {
		return fmt.Errorf("sdboot: need at least two slots, got %q", c.Slots)
	}
	for i, s := range c.Slots {
		if !slotName.MatchString(s) || slices.Contains(c.Slots[:i], s) {
			return fmt.Errorf("sdboot: slot name %q: want distinct names of letters, digits, '_' or '-'", s)
		}
	}
	if c.EntryPrefix == "" {
		c.EntryPrefix = "switchback-"
	}
	if strings.ContainsAny(c.EntryPrefix, "/+*?[\x00") {
		return fmt.Errorf("sdboot: entry prefix %q has a character not allowed in an entry name or pattern", c.EntryPrefix)
	}
	if c.EFIVarsDir == "" {
		c.EFIVarsDir = "/sys/firmware/efi/efivars"
	}
	if c.CmdlinePath == "" {
		c.CmdlinePath = "/proc/cmdline"
	}
	return nil
}

// Control is a [slots.BootControl] over systemd-boot's boot counting: each
// slot is a Boot Loader Specification entry whose name carries the tries
// left ("+LEFT-DONE"), and whose sort-key orders it. It also implements
// [slots.CanaryChecker], checking that systemd-boot is configured so that
// the counting works.
//
// A Control is safe for concurrent use; steps of several processes are
// serialized with flock(2) on the entries directory (systemd-boot itself
// does not lock: it runs when nothing else does).
type Control struct {
	cfg Config
	mu  sync.Mutex
	// afterOp, if set, runs after every file operation of a step; tests
	// cut the power there.
	afterOp func() error
}

var (
	_ slots.BootControl   = (*Control)(nil)
	_ slots.CanaryChecker = (*Control)(nil)
)

// New returns a Control for cfg. It does not touch the ESP; the entries
// must exist (one per slot) by the first call.
func New(cfg Config) (*Control, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Control{cfg: cfg}, nil
}

func (c *Control) entriesDir() string { return filepath.Join(c.cfg.ESP, "loader", "entries") }

// entry is one slot's entry file.
type entry struct {
	slot    string
	name    EntryName
	file    string // file name in entriesDir
	sortKey string
	content []byte
	stale   []string // duplicates of the same id a crash left behind
}

func (e *entry) role() string { return e.sortKey }

// scan reads the slots' entries.
func (c *Control) scan() (map[string]*entry, error) {
	des, err := os.ReadDir(c.entriesDir())
	if err != nil {
		return nil, fmt.Errorf("sdboot: %w", err)
	}
	ids := make(map[string]string) // id -> slot
	for _, s := range c.cfg.Slots {
		ids[c.cfg.EntryPrefix+s+".conf"] = s
	}
	found := make(map[string][]*entry)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") || de.IsDir() {
			continue
		}
		n, err := ParseEntryName(de.Name())
		if err != nil {
			continue
		}
		slot, ok := ids[n.ID]
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.entriesDir(), de.Name()))
		if err != nil {
			return nil, fmt.Errorf("sdboot: %w", err)
		}
		found[slot] = append(found[slot], &entry{slot: slot, name: n, file: de.Name(), sortKey: entryField(b, "sort-key"), content: b})
	}
	out := make(map[string]*entry)
	for _, s := range c.cfg.Slots {
		es := found[s]
		if len(es) == 0 {
			return nil, fmt.Errorf("sdboot: slot %s: no entry %s in %s: %w", s, c.cfg.EntryPrefix+s+".conf", c.entriesDir(), errNoEntry)
		}
		// Of duplicates (a step cut between creating the new file and
		// removing the old), the one systemd-boot sorts first wins.
		sort.SliceStable(es, func(i, j int) bool { return bootLess(es[i], es[j]) })
		for _, d := range es[1:] {
			es[0].stale = append(es[0].stale, d.file)
		}
		out[s] = es[0]
	}
	return out, nil
}

// bootLess orders entries as systemd-boot's config_entry_compare does,
// for entries that all carry a sort key: no tries left last, then sort
// key ascending, then ID descending, then more tries left first. (Machine
// ID and version come between sort key and ID in systemd-boot; switchback's
// entries differ by sort key, or are both bad.)
func bootLess(a, b *entry) bool {
	if ab, bb := a.name.Bad(), b.name.Bad(); ab != bb {
		return !ab
	}
	if (a.sortKey == "") != (b.sortKey == "") {
		return a.sortKey != ""
	}
	if a.sortKey != b.sortKey {
		return a.sortKey < b.sortKey
	}
	if a.name.ID != b.name.ID {
		return a.name.ID > b.name.ID
	}
	al, bl := -1, -1
	if a.name.Counting {
		al = a.name.Left
	}
	if b.name.Counting {
		bl = b.name.Left
	}
	if al != bl {
		return al > bl
	}
	return a.name.Done < b.name.Done
}

// entryField returns the value of the first line "key value" of an entry
// or loader.conf.
func entryField(b []byte, key string) string {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k == "" || k[0] == '#' {
			continue
		}
		if k == key {
			return strings.TrimSpace(v)
		}
		if k2, v2, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && k2 == key {
			return strings.TrimSpace(v2)
		}
	}
	return ""
}

// setSortKey returns content with its sort-key line set to key (replaced,
// or added after the title line, or at the end).
func setSortKey(content []byte, key string) []byte {
	lines := strings.Split(string(content), "\n")
	out := make([]string, 0, len(lines)+1)
	done := false
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "sort-key" {
			if !done {
				out = append(out, "sort-key "+key)
				done = true
			}
			continue
		}
		out = append(out, line)
	}
	if !done {
		at := len(out)
		for i, line := range out {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "title" {
				at = i + 1
				break
			}
		}
		if at == len(out) && at > 0 && out[at-1] == "" {
			at-- // before the final newline
		}
		out = slices.Insert(out, at, "sort-key "+key)
	}
	return []byte(strings.Join(out, "\n"))
}

// state is what the entries say.
type state struct {
	entries map[string]*entry
	order   []string // slots in systemd-boot's order
}

func (c *Control) load() (state, error) {
	es, err := c.scan()
	if err != nil {
		return state{}, err
	}
	st := state{entries: es}
	st.order = append(st.order, c.cfg.Slots...)
	sort.SliceStable(st.order, func(i, j int) bool { return bootLess(es[st.order[i]], es[st.order[j]]) })
	return st, nil
}

func (st state) trial() string {
	for _, s := range st.order {
		if st.entries[s].role() == SortKeyTrial {
			return s
		}
	}
	return ""
}

// primary is the slot that boots when no trial does: the entry marked
// primary if it is not bad, else the first good entry after the trial.
func (st state) primary() string {
	for _, s := range st.order {
		if e := st.entries[s]; e.role() == SortKeyPrimary && !e.name.Bad() {
			return s
		}
	}
	for _, s := range st.order {
		if e := st.entries[s]; e.role() != SortKeyTrial && !e.name.Bad() {
			return s
		}
	}
	for _, s := range st.order {
		if st.entries[s].role() == SortKeyPrimary {
			return s
		}
	}
	return st.order[0]
}

func (st state) status(booted string) slots.BootStatus {
	bs := slots.BootStatus{Booted: booted, Primary: st.primary()}
	if t := st.trial(); t != "" {
		bs.Trial = t
		if e := st.entries[t]; e.name.Counting {
			bs.TriesLeft = e.name.Left
		}
	}
	for _, s := range st.order {
		if e := st.entries[s]; e.name.Bad() && s != bs.Trial {
			bs.Bad = append(bs.Bad, s)
		}
	}
	slices.Sort(bs.Bad)
	return bs
}

// readEFIString reads an efivarfs variable holding a UTF-16LE string:
// four attribute bytes, then the string, NUL-terminated.
func readEFIString(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	if len(b) < 4 || (len(b)-4)%2 != 0 {
		return "", fmt.Errorf("sdboot: %s: not a UTF-16 EFI variable (%d bytes)", p, len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i+1 < len(b); i += 2 {
		v := uint16(b[i]) | uint16(b[i+1])<<8
		if v == 0 {
			break
		}
		u = append(u, v)
	}
	return string(utf16.Decode(u)), nil
}

func (c *Control) efiVar(name string) string {
	return filepath.Join(c.cfg.EFIVarsDir, name+"-"+LoaderGUID)
}

// booted finds the running slot: LoaderEntrySelected, else
// switchback.slot= on the kernel command line.
func (c *Control) booted(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id, err := readEFIString(c.efiVar("LoaderEntrySelected"))
	if err == nil {
		n, perr := ParseEntryName(id)
		if perr == nil {
			id = n.ID
		}
		for _, s := range c.cfg.Slots {
			if strings.EqualFold(id, c.cfg.EntryPrefix+s+".conf") || strings.EqualFold(id, c.cfg.EntryPrefix+s) {
				return s, nil
			}
		}
		return "", fmt.Errorf("sdboot: systemd-boot booted entry %q, which is none of the slots' entries (%s*.conf): %w", id, c.cfg.EntryPrefix, slots.ErrMismatch)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	data, err := os.ReadFile(c.cfg.CmdlinePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sdboot: no LoaderEntrySelected, and kernel command line: %w", err)
	}
	if err == nil {
		cl, err := partition.ParseCmdline(string(data))
		if err != nil {
			return "", err
		}
		if s, ok := cl.Get("switchback.slot"); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("sdboot: cannot tell the booted slot: no LoaderEntrySelected EFI variable (not booted by systemd-boot?) and no switchback.slot= in %s: %w", c.cfg.CmdlinePath, slots.ErrMismatch)
}

// Status reports the booted, primary, trial and bad slots.
func (c *Control) Status(ctx context.Context) (slots.BootStatus, error) {
	booted, err := c.booted(ctx)
	if err != nil {
		return slots.BootStatus{}, err
	}
	st, err := c.load()
	if err != nil {
		return slots.BootStatus{}, err
	}
	return st.status(booted), nil
}

// op is one atomic change of one entry: its file takes a new name and
// sort key.
type op struct {
	slot    string
	name    EntryName
	sortKey string
}

// apply makes the changes in order, each atomically: the new file is
// written under a temporary name ignored by systemd-boot (a leading dot),
// fsynced and renamed to its new name (the step's commit point for that
// entry), then the old file is removed and the directory fsynced. A cut
// anywhere leaves each entry either old or new, or both (the new one
// sorts first, and the next step removes the old).
func (c *Control) apply(st state, ops []op) error {
	dir := c.entriesDir()
	for _, o := range ops {
		e := st.entries[o.slot]
		newFile := o.name.String()
		content := setSortKey(e.content, o.sortKey)
		switch {
		case newFile != e.file && string(content) == string(e.content):
			// Only the counter changes: one rename, as systemd-boot
			// and systemd-bless-boot do.
			if err := os.Rename(filepath.Join(dir, e.file), filepath.Join(dir, newFile)); err != nil {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := durable.SyncDir(dir); err != nil {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := c.cut(); err != nil {
				return err
			}
		case newFile != e.file || string(content) != string(e.content):
			tmp := "." + newFile + ".switchback-tmp"
			if err := writeSync(filepath.Join(dir, tmp), content); err != nil {
				return err
			}
			if err := c.cut(); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, newFile)); err != nil {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := durable.SyncDir(dir); err != nil {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := c.cut(); err != nil {
				return err
			}
		}
		olds := e.stale
		if newFile != e.file && string(content) != string(e.content) {
			olds = append(olds, e.file)
		}
		for _, f := range olds {
			if f == newFile {
				continue
			}
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := durable.SyncDir(dir); err != nil {
				return fmt.Errorf("sdboot: %w", err)
			}
			if err := c.cut(); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTemps removes temporary files a cut step left behind (systemd-boot
// ignores them: their names start with a dot and do not end in .conf).
func (c *Control) removeTemps() {
	des, err := os.ReadDir(c.entriesDir())
	if err != nil {
		return
	}
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".switchback-tmp") {
			os.Remove(filepath.Join(c.entriesDir(), n))
		}
	}
}

func (c *Control) cut() error {
	if c.afterOp != nil {
		return c.afterOp()
	}
	return nil
}

func writeSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("sdboot: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("sdboot: write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sdboot: sync %s: %w", p, err)
	}
	return f.Close()
}

func (c *Control) step(ctx context.Context, plan func(st state, booted string) ([]op, error)) error {
	booted, err := c.booted(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Other processes (another switchback, bootctl) are kept out with
	// flock(2) on the entries directory.
	d, err := os.Open(c.entriesDir())
	if err != nil {
		return fmt.Errorf("sdboot: %w", err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("sdboot: lock %s: %w", c.entriesDir(), err)
	}
	st, err := c.load()
	if err != nil {
		return err
	}
	ops, err := plan(st, booted)
	if err != nil {
		return err
	}
	c.removeTemps()
	return c.apply(st, ops)
}

func (c *Control) known(slot string) error {
	if !slices.Contains(c.cfg.Slots, slot) {
		return fmt.Errorf("sdboot: slot %q (known: %s): %w", slot, strings.Join(c.cfg.Slots, ", "), slots.ErrUnknownSlot)
	}
	return nil
}

// MaxTries is the most tries Arm accepts.
const MaxTries = 9

// Arm makes slot the trial for tries boots: its entry is renamed to
// "+tries" and takes the trial sort key, which sorts it first while it
// has tries left. The file is renamed with its counter before it takes
// the trial sort key, in one rename, so a cut never leaves an uncounted
// entry sorting first. Any other trial is demoted.
func (c *Control) Arm(ctx context.Context, slot string, tries int) error {
	return c.step(ctx, func(st state, booted string) ([]op, error) {
		if err := c.known(slot); err != nil {
			return nil, err
		}
		if slot == booted {
			return nil, fmt.Errorf("sdboot: arm %s: %w", slot, slots.ErrSlotActive)
		}
		if tries < 1 || tries > MaxTries {
			return nil, fmt.Errorf("sdboot: arm %s: %d tries, want 1 to %d", slot, tries, MaxTries)
		}
		var ops []op
		if t := st.trial(); t != "" && t != slot {
			ops = append(ops, op{t, st.entries[t].name, SortKeyOther})
		}
		e := st.entries[slot]
		ops = append(ops, op{slot, EntryName{ID: e.name.ID, Counting: true, Left: tries, Done: 0}, SortKeyTrial})
		return ops, nil
	})
}

// Commit blesses the running slot as systemd-bless-boot does for a good
// boot (the counter dropped) and makes it the primary. The old primary is
// demoted first, so a cut in between leaves the trial running on its
// remaining tries with the old primary as fallback.
func (c *Control) Commit(ctx context.Context, slot string) error {
	return c.step(ctx, func(st state, booted string) ([]op, error) {
		if err := c.known(slot); err != nil {
			return nil, err
		}
		if slot != booted {
			return nil, fmt.Errorf("sdboot: commit %s while %s runs: %w", slot, booted, slots.ErrNotRunning)
		}
		var ops []op
		for _, s := range st.order {
			if e := st.entries[s]; s != slot && e.role() == SortKeyPrimary {
				ops = append(ops, op{s, e.name, SortKeyOther})
			}
		}
		ops = append(ops, op{slot, st.entries[slot].name.Blessed(), SortKeyPrimary})
		return ops, nil
	})
}

// MarkBad marks slot bad as systemd-bless-boot does (tries left set to
// 0, which sorts it last) and ends its trial. If it was the primary, the
// first other slot that is not bad becomes primary (after the bad mark,
// so a cut in between boots that slot anyway).
func (c *Control) MarkBad(ctx context.Context, slot string) error {
	return c.step(ctx, func(st state, _ string) ([]op, error) {
		if err := c.known(slot); err != nil {
			return nil, err
		}
		e := st.entries[slot]
		ops := []op{{slot, e.name.Cursed(), SortKeyOther}}
		if st.primary() == slot || e.role() == SortKeyPrimary {
			for _, s := range st.order {
				if o := st.entries[s]; s != slot && !o.name.Bad() && o.role() != SortKeyTrial {
					ops = append(ops, op{s, o.name, SortKeyPrimary})
					break
				}
			}
		}
		return ops, nil
	})
}

// CheckCanary checks that systemd-boot is set up for switchback's
// counting, and fails with an error wrapping [slots.ErrMismatch] that
// says what to fix: loader.conf's default must be a pattern matching all
// the slots' entries (so that the order, not a fixed entry, decides), no
// LoaderEntryDefault or LoaderEntryOneShot EFI variable may pin an entry
// ("bootctl set-default"), and the booted entry must be a slot's.
func (c *Control) CheckCanary(ctx context.Context) error {
	if _, err := c.booted(ctx); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(c.cfg.ESP, "loader", "loader.conf"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sdboot: %w", err)
	}
	pattern := entryField(b, "default")
	for _, s := range c.cfg.Slots {
		id := c.cfg.EntryPrefix + s + ".conf"
		if ok, _ := path.Match(pattern, id); !ok {
			return fmt.Errorf("sdboot: loader.conf default %q does not match entry %s: set \"default %s*\" so that systemd-boot picks the first switchback entry in its order: %w", pattern, id, c.cfg.EntryPrefix, slots.ErrMismatch)
		}
	}
	for _, v := range []string{"LoaderEntryDefault", "LoaderEntryOneShot"} {
		if id, err := readEFIString(c.efiVar(v)); err == nil && id != "" {
			return fmt.Errorf("sdboot: EFI variable %s=%q pins the entry systemd-boot boots, overriding the trial order: remove it (bootctl set-default \"\"): %w", v, id, slots.ErrMismatch)
		}
	}
	return nil
}
