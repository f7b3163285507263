package smptest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
)

// Behavior is how a simulated application behaves once MCUboot started
// it. The zero value is a healthy application.
type Behavior struct {
	// Crash makes the application crash at start; the watchdog resets the
	// MCU, and MCUboot reverts an image that was on test. A confirmed
	// image that crashes leaves the MCU dead.
	Crash bool
	// Silent makes the application hang without answering SMP requests.
	Silent bool
	// ReportHash, when set, is what image state reports as the hash of
	// the running image (a buggy or lying application).
	ReportHash []byte
}

// Config configures a simulated [MCU].
type Config struct {
	// Dir holds the flash files. Required.
	Dir string
	// SlotSize is the size of each slot, its trailer sector included
	// (default 256 KiB); SectorSize the flash sector (default 4 KiB).
	SlotSize, SectorSize int64
	// BufSize and BufCount are the SMP buffers the MCU reports (defaults
	// 384 and 4, Zephyr's CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE and _COUNT
	// defaults). A request longer than BufSize is refused.
	BufSize, BufCount int
	// Key, when set, is the ED25519 key MCUboot checks images against.
	Key ed25519.PublicKey
	// Factory is written to the primary slot of a new flash: the image
	// the MCU left the factory with (signed, when Key is set: MCUboot
	// checks the primary slot too).
	Factory []byte
	// App decides how the application in an image behaves (nil: healthy).
	App func(im *smp.Image) Behavior
	// ForgetUpload keeps the upload session in RAM, as Zephyr does: a
	// reset then restarts an upload from offset 0. By default it is kept
	// in flash, and an upload resumes after a power cut.
	ForgetUpload bool
	// ResetDelay is the time between answering a reset request and
	// resetting (default 1ms).
	ResetDelay time.Duration
	// Logf, if set, receives the MCU's events (boots, swaps, power).
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return errors.New("smptest: Config.Dir is required")
	}
	c.SlotSize = cmpOr(c.SlotSize, 256<<10)
	c.SectorSize = cmpOr(c.SectorSize, 4<<10)
	c.BufSize = cmpOr(c.BufSize, 384)
	c.BufCount = cmpOr(c.BufCount, 4)
	c.ResetDelay = cmpOr(c.ResetDelay, time.Millisecond)
	if c.SlotSize%c.SectorSize != 0 || c.SlotSize/c.SectorSize < 2 {
		return fmt.Errorf("smptest: slot size %d is not at least two sectors of %d", c.SlotSize, c.SectorSize)
	}
	if trailerSize(int(c.SlotSize/c.SectorSize)-1) > int(c.SectorSize) {
		return fmt.Errorf("smptest: the trailer of %d sectors does not fit one sector", c.SlotSize/c.SectorSize)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// power is the MCU's state.
type power int

const (
	powerOff  power = iota // no power, or dead (MCUboot found nothing to boot)
	resetting              // answering nothing until the reset is done
	running
)

// MCU is a simulated microcontroller running MCUboot (swap using scratch)
// and an application with an SMP server (OS and image groups). Its flash
// lives in files, so that it can lose power at any flash operation
// ([MCU.CutAfter], [MCU.PowerOff]) and start again from them
// ([MCU.PowerOn], or [New] on the same directory).
//
// An MCU is safe for concurrent use.
type MCU struct {
	cfg Config

	mu       sync.Mutex
	flash    *flash
	state    power
	image    *smp.Image // the running image
	behavior Behavior
	session  *uploadSession
	boots    int
	events   []string
	servers  []server

	sessionFile *os.File // the upload session record, open while powered
}

// New makes an MCU over the flash in cfg.Dir (a new, erased flash gets
// cfg.Factory in its primary slot) and powers it on.
func New(cfg Config) (*MCU, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	m := &MCU{cfg: cfg}
	if err := m.factory(); err != nil {
		return nil, err
	}
	m.PowerOn()
	return m, nil
}

// factory writes the factory image into an erased primary slot.
func (m *MCU) factory() error {
	f, err := openFlash(m.cfg.Dir, m.cfg.SlotSize, m.cfg.SectorSize)
	if err != nil {
		return err
	}
	defer f.close()
	head, err := f.read(primary, 0, 4)
	if err != nil || !bytes.Equal(head, []byte{0xff, 0xff, 0xff, 0xff}) || m.cfg.Factory == nil {
		return err
	}
	if int64(len(m.cfg.Factory)) > f.imageArea() {
		return fmt.Errorf("smptest: factory image of %d bytes exceeds the slot", len(m.cfg.Factory))
	}
	return f.write(primary, 0, m.cfg.Factory)
}

// PowerOn opens the flash and runs the bootloader and the application. A
// running MCU is left alone.
func (m *MCU) PowerOn() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != powerOff {
		return
	}
	f, err := openFlash(m.cfg.Dir, m.cfg.SlotSize, m.cfg.SectorSize)
	if err != nil {
		m.event("power on: %v", err)
		return
	}
	m.flash = f
	m.session = nil
	if !m.cfg.ForgetUpload {
		m.session = loadSession(m.cfg.Dir)
	}
	m.start()
}

// PowerOff cuts the power now, between two flash operations.
func (m *MCU) PowerOff() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.powerOff()
}

func (m *MCU) powerOff() {
	if m.flash != nil {
		m.flash.close()
		m.flash = nil
	}
	if m.sessionFile != nil {
		m.sessionFile.Close()
		m.sessionFile = nil
	}
	if m.state != powerOff {
		m.event("power off")
	}
	m.state, m.image = powerOff, nil
	for _, s := range m.servers {
		s.reset()
	}
}

// CutAfter cuts the power at the flash operation after the next n; a
// negative n disarms the cut.
func (m *MCU) CutAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.flash != nil {
		m.flash.cutAfter = n
	}
}

// FlashOps is the number of flash writes and erases since power on.
func (m *MCU) FlashOps() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.flash == nil {
		return 0
	}
	return m.flash.ops
}

// start runs the bootloader and the application, with the watchdog: an
// application that crashes resets the MCU, up to a few times.
func (m *MCU) start() {
	for range 4 {
		m.boots++
		im, err := m.boot()
		if err != nil {
			m.fail(err)
			return
		}
		m.image, m.behavior = im, Behavior{}
		if m.cfg.App != nil {
			m.behavior = m.cfg.App(im)
		}
		m.event("boot %d: running %s (%x)", m.boots, im.Version, im.Hash[:4])
		if !m.behavior.Crash {
			m.state = running
			return
		}
		m.event("application crashed; watchdog reset")
	}
	m.fail(errors.New("smptest: crash loop"))
}

// fail leaves the MCU without power (a cut) or dead (nothing to boot).
func (m *MCU) fail(err error) {
	m.event("boot failed: %v", err)
	m.powerOff()
}

// reset is the reset an SMP request asked for, after the response left.
func (m *MCU) reset() {
	time.Sleep(m.cfg.ResetDelay)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != resetting {
		return
	}
	m.event("reset")
	if !m.cfg.ForgetUpload {
		m.session = loadSession(m.cfg.Dir)
	} else {
		m.session = nil
	}
	for _, s := range m.servers {
		s.reset()
	}
	m.start()
}

// Running reports the image the MCU runs, as the flash has it, and
// whether the MCU runs at all.
func (m *MCU) Running() (hash []byte, version string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != running || m.image == nil {
		return nil, "", false
	}
	return slices.Clone(m.image.Hash), m.image.Version.String(), true
}

// Powered reports whether the MCU has power (it may be resetting).
func (m *MCU) Powered() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state != powerOff
}

// Boots is the number of times the bootloader ran.
func (m *MCU) Boots() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boots
}

// Events returns what happened so far, in order.
func (m *MCU) Events() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func (m *MCU) event(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	m.events = append(m.events, s)
	if m.cfg.Logf != nil {
		m.cfg.Logf("mcu: %s", s)
	}
}

// Close powers the MCU off and stops its servers.
func (m *MCU) Close() error {
	m.mu.Lock()
	servers := m.servers
	m.servers = nil
	m.powerOff()
	m.mu.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}
