package smp

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// bauds maps line speeds to their termios constants.
var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800,
	921600: unix.B921600, 1000000: unix.B1000000,
}

// OpenSerial opens a serial port (/dev/ttyACM0, /dev/ttyUSB0, a pty) in
// raw mode at baud bits per second, 8N1 without flow control, and returns
// a [Serial] transport over it. A baud of 0 keeps the port's speed (USB
// CDC ACM and ptys ignore it).
func OpenSerial(path string, baud int) (*Serial, error) {
	speed, ok := bauds[baud]
	if !ok && baud != 0 {
		return nil, fmt.Errorf("%w: serial speed %d", ErrConfig, baud)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var terr error
	if err := rc.Control(func(fd uintptr) { terr = rawMode(int(fd), speed) }); err != nil || terr != nil {
		f.Close()
		return nil, fmt.Errorf("smp: serial port %s: %w", path, cmpOr(terr, err))
	}
	return NewSerial(f), nil
}

// rawMode is cfmakeraw, 8N1, no flow control, reads that return as soon
// as a byte is there, and, when speed is set, the line speed.
func rawMode(fd int, speed uint32) error {
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS
	tio.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	if speed != 0 {
		tio.Cflag = tio.Cflag&^unix.CBAUD | speed
		tio.Ispeed, tio.Ospeed = speed, speed
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
}
