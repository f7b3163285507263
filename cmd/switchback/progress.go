package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/updater"
)

// progress shows how far an install is. On a terminal it rewrites one line
// in place (at most every tick); elsewhere (a log, a pipe) it prints a
// plain line at every tenth of the image. Safe for concurrent use.
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu        sync.Mutex
	component string
	start     time.Time // of this transfer (or since Done went back)
	startDone int64
	last      time.Time // of the last line drawn
	lastDone  int64
	step      int64 // the last tenth printed (plain lines)
	open      bool  // a terminal line is drawn and not ended
}

// progressTick is how often the terminal line is redrawn at most.
const progressTick = 200 * time.Millisecond

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, now: time.Now}
}

// update takes one Progress event.
func (p *progress) update(e updater.Progress) {
	if e.Total <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if e.Component != p.component || e.Done < p.lastDone {
		// A new transfer, or one that went back (a fallback from a delta
		// to the full image): count the rate and the steps afresh.
		p.endLocked()
		p.component, p.start, p.startDone, p.step = e.Component, now, e.Done, e.Done*10/e.Total
	}
	p.lastDone = e.Done
	if !p.tty {
		if step := e.Done * 10 / e.Total; step > p.step {
			p.step = step
			fmt.Fprintln(p.w, p.line(e, now))
		}
		return
	}
	if now.Sub(p.last) < progressTick && e.Done < e.Total {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(e, now))
	p.open = true
}

// line is "app: 42% 107.5 MiB of 256.0 MiB, 31.2 MiB/s".
func (p *progress) line(e updater.Progress, now time.Time) string {
	s := fmt.Sprintf("%s: %d%% %s of %s", e.Component, e.Done*100/e.Total, formatBytes(e.Done), formatBytes(e.Total))
	if d := now.Sub(p.start); d >= time.Second {
		s += fmt.Sprintf(", %s/s", formatBytes(int64(float64(e.Done-p.startDone)/d.Seconds())))
	}
	return s
}

// end ends a terminal line, before other output.
func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
}

func (p *progress) endLocked() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// formatBytes writes n in binary units, exact below 1 KiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
