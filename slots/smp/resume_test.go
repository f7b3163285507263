package smp_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// link is a UDP relay between the gateway and the MCU that can be cut.
type link struct {
	pc   *net.UDPConn // the gateway's side
	dc   *net.UDPConn // the MCU's side
	down atomic.Bool
	sent atomic.Int64 // bytes relayed towards the MCU
	// dropUp and dropDown, when set, drop the datagrams they return true
	// for, towards the MCU and back.
	dropUp, dropDown func(p []byte) bool

	mu     sync.Mutex
	client net.Addr
}

func newLink(t *testing.T, mcuAddr string, opts ...func(*link)) *link {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raddr, _ := net.ResolveUDPAddr("udp", mcuAddr)
	dc, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	l := &link{pc: pc, dc: dc}
	for _, o := range opts {
		o(l)
	}
	t.Cleanup(func() { pc.Close(); dc.Close() })
	go l.up()
	go l.back()
	return l
}

func (l *link) up() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := l.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		l.mu.Lock()
		l.client = from
		l.mu.Unlock()
		if !l.down.Load() && (l.dropUp == nil || !l.dropUp(buf[:n])) {
			l.sent.Add(int64(n))
			l.dc.Write(buf[:n])
		}
	}
}

func (l *link) back() {
	buf := make([]byte, 64<<10)
	for {
		n, err := l.dc.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // ICMP while the MCU is away
		}
		l.mu.Lock()
		to := l.client
		l.mu.Unlock()
		if !l.down.Load() && to != nil && (l.dropDown == nil || !l.dropDown(buf[:n])) {
			l.pc.WriteTo(buf[:n], to)
		}
	}
}

// resumeDevice is a Device over the link that records where each upload
// starts and can act at a given progress.
func resumeDevice(t *testing.T, addr string, at func(done, total int64)) *smp.Device {
	return resumeDeviceIn(t, t.TempDir(), addr, at)
}

// resumeDeviceIn is resumeDevice on the gateway directory dir.
func resumeDeviceIn(t *testing.T, dir, addr string, at func(done, total int64)) *smp.Device {
	u, err := smp.NewUDP(smp.UDPConfig{Addr: addr, Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := smp.New(smp.Config{Name: "mcu", Dir: dir, Transport: u, Progress: at,
		Client: smp.ClientConfig{Timeout: 250 * time.Millisecond, Retries: 3}, ResetGrace: time.Millisecond, ResetTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// progressLog records the first progress report of each upload attempt
// and runs cut once, when the upload passes 60%.
type progressLog struct {
	mu      sync.Mutex
	firsts  []int64
	started bool
	cut     func()
}

func (p *progressLog) report(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.firsts, p.started = append(p.firsts, done), true
	}
	if p.cut != nil && done > total*6/10 {
		p.cut()
		p.cut = nil
	}
}

func (p *progressLog) next() {
	p.mu.Lock()
	p.started = false
	p.mu.Unlock()
}

// TestUploadResumeAfterDroppedLink cuts the link at 60% of an upload; the
// gateway restarts (a new Device on the same directory) and its Arm
// resumes at the offset the MCU reports.
func TestUploadResumeAfterDroppedLink(t *testing.T) {
	r := newRig(t, rigOptions{})
	l := newLink(t, r.addr)
	v2 := image(120_000, 2, nil)
	p := &progressLog{cut: func() { l.down.Store(true) }}
	dir := t.TempDir()
	d := resumeDeviceIn(t, dir, l.pc.LocalAddr().String(), p.report)
	ctx := context.Background()
	stage(t, d, "b", v2)
	if err := d.Arm(ctx, "b", 1); !errors.Is(err, smp.ErrNoResponse) {
		t.Fatalf("Arm over a cut link: %v, want ErrNoResponse", err)
	}
	d.Close()
	l.down.Store(false)
	p.next()
	d = resumeDeviceIn(t, dir, l.pc.LocalAddr().String(), p.report)
	if err := d.Arm(ctx, "b", 1); err != nil {
		t.Fatalf("Arm after the link came back: %v", err)
	}
	if len(p.firsts) != 2 || p.firsts[1] < int64(len(v2))/2 {
		t.Errorf("uploads started at %v; want the second to resume past %d", p.firsts, len(v2)/2)
	}
	// Everything sent, both attempts and every header, stays well below
	// what starting over would cost (1.6 images).
	if sent := l.sent.Load(); sent > int64(len(v2))*13/10 {
		t.Errorf("sent %d bytes for an image of %d", sent, len(v2))
	}
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, r.mcu, v2)
}

// TestUploadResumeAfterPowerCut cuts the MCU's power at 60% of an upload.
// An MCU that keeps its upload session in flash resumes where it was; one
// that keeps it in RAM (Zephyr's img_mgmt) makes the gateway start over.
// Either way the image arrives whole and runs.
func TestUploadResumeAfterPowerCut(t *testing.T) {
	for _, forget := range []bool{false, true} {
		name := map[bool]string{false: "session in flash", true: "session in RAM"}[forget]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOptions{mcu: smptest.Config{ForgetUpload: forget}})
			v2 := image(120_000, 2, nil)
			p := &progressLog{cut: func() { r.mcu.CutAfter(3) }}
			d := resumeDevice(t, r.addr, p.report)
			ctx := context.Background()
			stage(t, d, "b", v2)
			if err := d.Arm(ctx, "b", 1); !errors.Is(err, smp.ErrNoResponse) {
				t.Fatalf("Arm while the power goes: %v, want ErrNoResponse", err)
			}
			r.mcu.PowerOn()
			p.next()
			if err := d.Arm(ctx, "b", 1); err != nil {
				t.Fatalf("Arm after power on: %v", err)
			}
			resumed := len(p.firsts) == 2 && p.firsts[1] > int64(len(v2))/2
			if resumed == forget {
				t.Errorf("uploads started at %v: resumed %v, want %v", p.firsts, resumed, !forget)
			}
			if err := d.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			wantStatus(t, d, slots.BootStatus{Booted: "b", Primary: "a", Trial: "b"})
			wantRunning(t, r.mcu, v2)
		})
	}
}
