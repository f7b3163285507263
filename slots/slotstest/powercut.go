package slotstest

import (
	"errors"
	"sync"
)

// ErrPowerCut is returned by every operation of a [MemSlot] or [FakeBoot]
// while its [PowerCut] has the power off.
var ErrPowerCut = errors.New("slotstest: power cut")

// ErrInjected is returned by a [MemSlot] write that fails because of a
// fault injected with [MemSlot.FailWritesAfterBytes] or
// [MemSlot.FailWritesAfterCalls].
var ErrInjected = errors.New("slotstest: injected write failure")

// device is a fake that a PowerCut powers on again.
type device interface {
	powerOn()
}

// PowerCut is a power switch shared by the fakes of one simulated device.
//
// Every write operation of an attached fake counts: [MemSlot] WriteAt and
// Sync calls, and each atomic write of a [FakeBoot] environment (Arm,
// Commit, MarkBad, and the boot counter the fake bootloader decrements).
// After [PowerCut.CutAfter](n), n more write operations succeed and the
// next one fails with [ErrPowerCut]; from then on every operation of every
// attached fake, reads included, fails with ErrPowerCut until
// [PowerCut.Restore] powers the device on again. Power-on keeps only what was
// durable: a MemSlot goes back to its content at its last successful Sync,
// a FakeBoot keeps its environment (its writes are atomic) and runs its
// bootloader, as after [FakeBoot.Reboot]. Writers opened before the cut
// fail after it.
//
// A PowerCut is safe for concurrent use.
type PowerCut struct {
	mu      sync.Mutex
	limit   int // write operations left before the cut; -1: not armed
	off     bool
	ops     int
	cuts    int
	devices []device
}

// NewPowerCut returns a switch with the power on and no cut armed.
func NewPowerCut() *PowerCut {
	return &PowerCut{limit: -1}
}

// CutAfter arms the switch: n more write operations succeed and the one
// after them cuts the power. CutAfter(0) cuts at the next write.
func (p *PowerCut) CutAfter(n int) {
	if n < 0 {
		n = 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit = n
}

// Cut cuts the power now.
func (p *PowerCut) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.off {
		p.off = true
		p.cuts++
	}
	p.limit = -1
}

// Restore powers the device on again and disarms the switch: MemSlots
// lose what was not synced, FakeBoots run their bootloader. Restore with
// the power on does nothing.
func (p *PowerCut) Restore() {
	p.mu.Lock()
	if !p.off {
		p.mu.Unlock()
		return
	}
	p.off = false
	p.limit = -1
	devs := append([]device(nil), p.devices...)
	p.mu.Unlock()
	// Called without p.mu held: a powering-on device writes (the boot
	// counter) through p.
	for _, d := range devs {
		d.powerOn()
	}
}

// IsCut reports whether the power is off.
func (p *PowerCut) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// Cuts reports how many times the power was cut.
func (p *PowerCut) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Ops reports how many write operations succeeded since the switch was
// made.
func (p *PowerCut) Ops() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ops
}

func (p *PowerCut) attach(d device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.devices = append(p.devices, d)
}

// write accounts for one write operation. It fails when the power is off
// or when this operation is the one that cuts it.
func (p *PowerCut) write() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return ErrPowerCut
	}
	if p.limit == 0 {
		p.off = true
		p.cuts++
		p.limit = -1
		return ErrPowerCut
	}
	if p.limit > 0 {
		p.limit--
	}
	p.ops++
	return nil
}

// check fails when the power is off.
func (p *PowerCut) check() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return ErrPowerCut
	}
	return nil
}
