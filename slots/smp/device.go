package smp

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/slots"
)

// Config configures a [Device]. Zero values of the optional fields are
// sensible defaults.
type Config struct {
	// Name names the device in errors and logs ("sensor-01").
	Name string
	// Dir is the gateway-side directory of this device: its state file
	// and the staged images of its two slots. Required; one per device.
	Dir string
	// Transport reaches the device. Required. The Device closes it.
	Transport Transport
	// Client tunes request timeouts and retries.
	Client ClientConfig
	// SlotSize is the largest image the device takes. Zero: asked from
	// the device (slot info), once, and remembered.
	SlotSize int64
	// PublicKey, when set, is the ED25519 key the device's MCUboot
	// checks; Arm then checks the signature before sending anything.
	PublicKey ed25519.PublicKey
	// ResetGrace is how long the device takes to go down after it
	// answered a reset request (default 500ms; Zephyr waits
	// CONFIG_MCUMGR_GRP_OS_RESET_MS, 250ms by default, before resetting).
	ResetGrace time.Duration
	// ResetTimeout bounds the wait for the device to answer after a reset,
	// swap included (default 60s).
	ResetTimeout time.Duration
	// PowerCycle, if set, resets the device by other means (a reset line,
	// a power switch) when it does not answer a reset request: the only
	// way back from a test image that hangs without its watchdog firing.
	PowerCycle func(ctx context.Context) error
	// Progress, if set, is called as an upload advances.
	Progress func(done, total int64)
	// Logger receives what the device does (nil: discarded).
	Logger *slog.Logger
}

// Errors callers branch on.
var (
	// ErrWrongImage is returned when the device runs or reports an image
	// other than the one the gateway expects.
	ErrWrongImage = errors.New("smp: device reports an unexpected image")
)

// stateVersion is the version of the state file format.
const stateVersion = 1

// devState is what the gateway remembers of a device, in Dir/state.json.
type devState struct {
	Version int `json:"version"`
	// Slots maps a slot name to the image it holds on the device.
	Slots map[string]slotRecord `json:"slots"`
	// Primary is the slot last known committed.
	Primary string `json:"primary"`
	// Trial and Tries are the armed trial and the starts it has left.
	Trial string `json:"trial,omitempty"`
	Tries int    `json:"tries,omitempty"`
	// Bad lists slots marked bad.
	Bad []string `json:"bad,omitempty"`
	// SlotSize is the device's slot size, once asked (MCUboot's flash
	// layout does not change with the application).
	SlotSize int64 `json:"slot_size,omitempty"`
}

// slotRecord identifies an image by its MCUboot SHA-256 TLV.
type slotRecord struct {
	Hash    string `json:"hash,omitempty"`
	Version string `json:"version,omitempty"`
}

// slotNames are the two logical slots of a device.
var slotNames = []string{"a", "b"}

// Device is a microcontroller behind the gateway, running MCUboot and an
// SMP server: a [slots.BootControl] over two [slots.Slot]s, "a" and "b".
//
// MCUboot runs images from its primary slot only and swaps in the image
// of its secondary slot. The two slots of a Device are logical: each is
// one of the two images the device holds, known by its SHA-256 TLV. The
// slot that is not running always maps to the device's secondary slot,
// so writing it and arming it uploads there; after a swap the names
// follow the images. The bytes of a slot are staged in Dir on the
// gateway: SMP has no command to read an image back, so [slots.Slot]
// Reader reads the staged copy.
//
// Arm parses the staged image strictly ([ParseImage]), uploads it to the
// secondary slot (resuming an interrupted upload where the device says),
// checks the device reports its hash, and marks it for test. The trial
// starts at the next reset ([Device.Reset]): MCUboot swaps it in and runs
// it once; unless the gateway confirms it (Commit, after its health
// checks, such as [Device.ImageCheck]), the next reset swaps it back.
// Tries beyond MCUboot's one are granted by the gateway: a [Device.Reset]
// of a running, unconfirmed trial with tries left lets MCUboot revert,
// marks the image for test again and resets once more.
//
// Only image 0, the application, is handled: devices with several image
// pairs (a network core's firmware beside the application) are not.
//
// A Device is safe for concurrent use.
type Device struct {
	cfg Config
	c   *Client
	log *slog.Logger

	mu    sync.Mutex
	st    devState
	slots []*slot
	buf   int // the device's SMP buffer size; asked again after a reset
}

// New opens the device's state in cfg.Dir (a new one: slot "a" is the
// image the device runs). It does not talk to the device.
func New(cfg Config) (*Device, error) {
	if cfg.Dir == "" || cfg.Transport == nil {
		return nil, fmt.Errorf("%w: Device needs Dir and Transport", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = filepath.Base(cfg.Dir)
	}
	cfg.ResetGrace = cmpOr(cfg.ResetGrace, 500*time.Millisecond)
	cfg.ResetTimeout = cmpOr(cfg.ResetTimeout, 60*time.Second)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, c: NewClient(cfg.Transport, cfg.Client), log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("device", cfg.Name)
	if err := d.load(); err != nil {
		return nil, err
	}
	for _, n := range slotNames {
		d.slots = append(d.slots, &slot{d: d, name: n})
	}
	return d, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (d *Device) statePath() string { return filepath.Join(d.cfg.Dir, "state.json") }

func (d *Device) load() error {
	b, err := os.ReadFile(d.statePath())
	if errors.Is(err, os.ErrNotExist) {
		d.st = devState{Version: stateVersion, Slots: map[string]slotRecord{}, Primary: "a"}
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &d.st); err != nil {
		return fmt.Errorf("smp: device %s: state file: %w", d.cfg.Name, err)
	}
	if d.st.Version != stateVersion || !slices.Contains(slotNames, d.st.Primary) {
		return fmt.Errorf("smp: device %s: state file version %d, primary %q: not understood", d.cfg.Name, d.st.Version, d.st.Primary)
	}
	if d.st.Slots == nil {
		d.st.Slots = map[string]slotRecord{}
	}
	return nil
}

// save writes the state durably (temp file, fsync, rename, fsync dir).
func (d *Device) save() error {
	b, err := json.MarshalIndent(d.st, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(d.statePath(), b, 0o644)
}

// Client returns the SMP client of the device, for requests of its own
// (an application group, echo).
func (d *Device) Client() *Client { return d.c }

// Close closes the transport.
func (d *Device) Close() error { return d.c.Close() }

// Slots returns the two slots, "a" and "b".
func (d *Device) Slots() []slots.Slot { return []slots.Slot{d.slots[0], d.slots[1]} }

// Slot returns the slot named name, or an error wrapping
// [slots.ErrUnknownSlot].
func (d *Device) Slot(name string) (slots.Slot, error) {
	if err := d.known(name); err != nil {
		return nil, err
	}
	return d.slots[slices.Index(slotNames, name)], nil
}

func (d *Device) known(name string) error {
	if !slices.Contains(slotNames, name) {
		return fmt.Errorf("smp: device %s: slot %q: %w", d.cfg.Name, name, slots.ErrUnknownSlot)
	}
	return nil
}

// nameOf returns the slot whose image has hash, preferring prefer.
func (st devState) nameOf(hash []byte, prefer string) string {
	h := hex.EncodeToString(hash)
	if len(hash) == 0 {
		return ""
	}
	if st.Slots[prefer].Hash == h {
		return prefer
	}
	for _, n := range slotNames {
		if st.Slots[n].Hash == h {
			return n
		}
	}
	return ""
}

func other(name string) string {
	if name == "a" {
		return "b"
	}
	return "a"
}

// images splits an image state response into the primary (slot 0) and
// secondary (slot 1) entries of image 0.
func images(list []ImageInfo) (p, s *ImageInfo) {
	for i := range list {
		im := &list[i]
		if im.Image != nil && *im.Image != 0 {
			continue
		}
		switch im.Slot {
		case 0:
			p = im
		case 1:
			s = im
		}
	}
	return p, s
}
