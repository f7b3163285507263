package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DefaultOutputTail is how many bytes of a command's combined output the
// [Command] check keeps for its error.
const DefaultOutputTail = 2 << 10

// CommandOption configures the [Command] check. An [Option] is a
// CommandOption.
type CommandOption interface{ applyCommand(*commandCheck) }

type commandOption func(*commandCheck)

func (o commandOption) applyCommand(c *commandCheck) { o(c) }
func (o Option) applyCommand(c *commandCheck)        { o(&c.base) }

// WithDir runs the command in dir.
func WithDir(dir string) CommandOption {
	return commandOption(func(c *commandCheck) { c.dir = dir })
}

// WithEnv sets the command's whole environment ("KEY=value" entries); by
// default it inherits the process's.
func WithEnv(env []string) CommandOption {
	return commandOption(func(c *commandCheck) { c.env = append([]string{}, env...) })
}

// WithOutputTail keeps the last n bytes of the command's combined output for
// its error; the default is [DefaultOutputTail]. Output beyond them is
// discarded as it arrives, so a chatty command costs no memory.
func WithOutputTail(n int) CommandOption {
	return commandOption(func(c *commandCheck) { c.tail = n })
}

type commandCheck struct {
	base
	name string
	args []string
	dir  string
	env  []string
	tail int
}

// Command returns a check that runs the program name with args (no shell;
// name is looked up in PATH when it has no slash) and passes when it exits
// with status 0. When the check's context ends the program is killed. Its
// error carries the exit status and the tail of the combined stdout and
// stderr. On Linux the program runs in a process group of its own, and the
// whole group is killed, children included. Its default name is
// "command:" + name.
func Command(name string, args ...string) HealthCheck {
	return CommandWith(name, args, nil)
}

// CommandWith is [Command] with options.
func CommandWith(name string, args []string, opts ...CommandOption) HealthCheck {
	c := &commandCheck{
		base: newBase("command:"+name, DefaultTimeout),
		name: name,
		args: append([]string{}, args...),
		tail: DefaultOutputTail,
	}
	for _, o := range opts {
		if o != nil {
			o.applyCommand(c)
		}
	}
	return c.finish(c.check)
}

// waitDelay bounds how long the check waits for the output pipes after the
// program exits or is killed: a daemon it forked may hold them open.
const waitDelay = time.Second

func (c *commandCheck) check(ctx context.Context) error {
	if c.name == "" {
		return errors.New("no command given")
	}
	if c.tail < 0 {
		return fmt.Errorf("output tail %d: must not be negative", c.tail)
	}
	cmd := exec.CommandContext(ctx, c.name, c.args...)
	cmd.Dir = c.dir
	if c.env != nil {
		cmd.Env = c.env
	}
	out := &tailBuffer{max: c.tail}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	ownProcessGroup(cmd)
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (killed: %w)", err, ctx.Err())
	}
	if t := out.String(); t != "" {
		return fmt.Errorf("%s: %w; output: %s", c.commandLine(), err, t)
	}
	return fmt.Errorf("%s: %w; no output", c.commandLine(), err)
}

func (c *commandCheck) commandLine() string {
	return strings.Join(append([]string{c.name}, c.args...), " ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	lost bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
		t.lost = true
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = t.buf[over:]
		t.lost = true
	}
	t.buf = append(t.buf, p...)
	if cap(t.buf) > 4*t.max+64 { // keep the backing array bounded
		t.buf = append([]byte(nil), t.buf...)
	}
	return n, nil
}

// String returns the kept tail on one line, with "..." in front when
// earlier output was dropped.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := printable(string(t.buf))
	if s != "" && t.lost {
		return "..." + s
	}
	return s
}
