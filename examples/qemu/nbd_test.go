package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// nbdTestClient is a minimal NBD client: fixed newstyle, NBD_OPT_GO.
type nbdTestClient struct {
	t      *testing.T
	c      net.Conn
	r      *bufio.Reader
	cookie uint64
}

func dialNBD(t *testing.T, s *nbdServer) *nbdTestClient {
	t.Helper()
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &nbdTestClient{t: t, c: c, r: bufio.NewReader(c)}
	hello := cl.read(18)
	if binary.BigEndian.Uint64(hello) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != nbdOptMagic {
		t.Fatalf("hello %x", hello)
	}
	cl.send(binary.BigEndian.AppendUint32(nil, nbdFlagFixedNewstyle|nbdFlagNoZeroes))
	// An option the server does not support, then GO on the default export.
	cl.option(8, nil)
	if typ, _ := cl.reply(); typ != nbdRepErrUnsup {
		t.Fatalf("structured reply option answered %#x, want ERR_UNSUP", typ)
	}
	cl.option(nbdOptGo, []byte{0, 0, 0, 0, 0, 0})
	typ, info := cl.reply()
	if typ != nbdRepInfo || binary.BigEndian.Uint64(info[2:]) != uint64(s.size) {
		t.Fatalf("GO: reply %d %x", typ, info)
	}
	if typ, _ := cl.reply(); typ != nbdRepAck {
		t.Fatalf("GO: reply %d, want ACK", typ)
	}
	return cl
}

func (cl *nbdTestClient) read(n int) []byte {
	cl.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(cl.r, b); err != nil {
		cl.t.Fatal(err)
	}
	return b
}

func (cl *nbdTestClient) send(b []byte) {
	cl.t.Helper()
	if _, err := cl.c.Write(b); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *nbdTestClient) option(opt uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, nbdOptMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	cl.send(append(b, data...))
}

func (cl *nbdTestClient) reply() (uint32, []byte) {
	h := cl.read(20)
	return binary.BigEndian.Uint32(h[12:]), cl.read(int(binary.BigEndian.Uint32(h[16:])))
}

// do sends a request and returns the reply's error and, for a read, data.
func (cl *nbdTestClient) do(typ, flags uint16, off uint64, length uint32, data []byte) (uint32, []byte) {
	cl.t.Helper()
	cl.cookie++
	b := binary.BigEndian.AppendUint32(nil, nbdRequestMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cl.cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	cl.send(append(b, data...))
	h := cl.read(16)
	if binary.BigEndian.Uint64(h[8:]) != cl.cookie {
		cl.t.Fatalf("reply cookie %x", h[8:])
	}
	code := binary.BigEndian.Uint32(h[4:])
	if typ == nbdCmdRead && code == 0 {
		return code, cl.read(int(length))
	}
	return code, nil
}

func newTestDisk(t *testing.T, size int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, bytes.Repeat([]byte{'.'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, filepath.Join(dir, "writes.log")
}

// TestNBDCutDropsUnflushedWrites: a flushed write and a FUA write survive a
// cut; a later unflushed write does not, even where it overlapped the FUA
// write's neighbour; the log holds every request in order.
func TestNBDCutDropsUnflushedWrites(t *testing.T) {
	disk, logPath := newTestDisk(t, 8192)
	s, err := startNBD(disk, logPath)
	if err != nil {
		t.Fatal(err)
	}
	cl := dialNBD(t, s)
	steps := []struct {
		typ, flags uint16
		off        uint64
		data       string
	}{
		{nbdCmdWrite, 0, 0, "flushed"},
		{nbdCmdFlush, 0, 0, ""},
		{nbdCmdWrite, 0, 100, "lost-lost"},
		{nbdCmdWrite, nbdCmdFlagFUA, 104, "FUA"},
		{nbdCmdWrite, 0, 200, "lost"},
	}
	for _, st := range steps {
		if code, _ := cl.do(st.typ, st.flags, st.off, uint32(len(st.data)), []byte(st.data)); code != 0 {
			t.Fatalf("request %+v: error %d", st, code)
		}
	}
	if code, got := cl.do(nbdCmdRead, 0, 100, 9, nil); code != 0 || string(got) != "lostFUAst" {
		t.Fatalf("read before the cut: %d %q", code, got)
	}
	if n, err := s.Cut(); err != nil || n != 2 {
		t.Fatalf("Cut: %d writes dropped, %v; want 2", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(disk)
	for off, want := range map[int]string{0: "flushed", 100: "....FUA..", 200: "...."} {
		if g := string(got[off : off+len(want)]); g != want {
			t.Errorf("after the cut, bytes at %d are %q, want %q", off, g, want)
		}
	}
	f, _ := os.Open(logPath)
	defer f.Close()
	var kinds []byte
	for {
		rec, err := readLogRecord(f)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, rec.Kind)
	}
	if string(kinds) != "WFWUWC" {
		t.Errorf("log kinds %q, want WFWUWC", kinds)
	}
}

// TestNBDFaultAndBounds: an injected fault answers the error and leaves the
// disk alone; a request past the end is EINVAL.
func TestNBDFaultAndBounds(t *testing.T) {
	disk, _ := newTestDisk(t, 4096)
	s, err := startNBD(disk, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl := dialNBD(t, s)
	s.SetFault(func(r nbdRequest) uint32 {
		if r.Type == nbdCmdWrite && r.Offset >= 1024 {
			return nbdENOSPC
		}
		return 0
	})
	tests := []struct {
		name string
		off  uint64
		want uint32
	}{
		{"below the fault", 0, 0},
		{"in the fault", 2048, nbdENOSPC},
		{"past the end", 4095, nbdEINVAL},
	}
	for _, tt := range tests {
		if code, _ := cl.do(nbdCmdWrite, 0, tt.off, 4, []byte("data")); code != tt.want {
			t.Errorf("%s: error %d, want %d", tt.name, code, tt.want)
		}
	}
	if _, got := cl.do(nbdCmdRead, 0, 2048, 4, nil); string(got) != "...." {
		t.Errorf("a failed write changed the disk: %q", got)
	}
	if st := s.Stats(); st.Faults != 1 || st.Writes != 1 {
		t.Errorf("stats %+v", st)
	}
}

// FuzzParseNBDRequest: any 28 bytes either parse into a request whose
// fields re-encode to the same bytes, or are refused.
func FuzzParseNBDRequest(f *testing.F) {
	req := binary.BigEndian.AppendUint32(nil, nbdRequestMagic)
	req = binary.BigEndian.AppendUint16(req, nbdCmdFlagFUA)
	req = binary.BigEndian.AppendUint16(req, nbdCmdWrite)
	req = binary.BigEndian.AppendUint64(req, 7)
	req = binary.BigEndian.AppendUint64(req, 4096)
	req = binary.BigEndian.AppendUint32(req, 512)
	f.Add(req)
	f.Add(make([]byte, 28))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseNBDRequest(b)
		if err != nil {
			return
		}
		if r.Type == nbdCmdWrite && r.Length > nbdMaxPayload {
			t.Fatalf("accepted a write of %d bytes", r.Length)
		}
		out := binary.BigEndian.AppendUint32(nil, nbdRequestMagic)
		out = binary.BigEndian.AppendUint16(out, r.Flags)
		out = binary.BigEndian.AppendUint16(out, r.Type)
		out = binary.BigEndian.AppendUint64(out, r.Cookie)
		out = binary.BigEndian.AppendUint64(out, r.Offset)
		out = binary.BigEndian.AppendUint32(out, r.Length)
		if !bytes.Equal(out, b) {
			t.Fatalf("%x parsed to %+v", b, r)
		}
	})
}

// FuzzReadLogRecord: the write-log reader never panics, and what it reads
// re-encodes to its input's prefix.
func FuzzReadLogRecord(f *testing.F) {
	var b bytes.Buffer
	writeLogRecord(&b, logRecord{Kind: logWrite, Offset: 512, Data: []byte("abc")})
	f.Add(b.Bytes())
	f.Add([]byte{logFlush, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{logWrite, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		rec, err := readLogRecord(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeLogRecord(&out, rec); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("%x re-encoded to %x", in, out.Bytes())
		}
	})
}

// TestNBDCutAt: a cut armed at the fourth write or flush request happens
// before that request is applied, drops the unflushed write before it,
// closes the connection, and refuses new ones until PowerOn.
func TestNBDCutAt(t *testing.T) {
	disk, _ := newTestDisk(t, 8192)
	s, err := startNBD(disk, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl := dialNBD(t, s)
	cut := s.CutAt(4)
	for _, st := range []struct {
		typ  uint16
		off  uint64
		data string
	}{{nbdCmdWrite, 0, "kept"}, {nbdCmdFlush, 0, ""}} {
		if code, _ := cl.do(st.typ, 0, st.off, uint32(len(st.data)), []byte(st.data)); code != 0 {
			t.Fatalf("request %+v: error %d", st, code)
		}
	}
	if code, _ := cl.do(nbdCmdRead, 0, 0, 4, nil); code != 0 {
		t.Fatalf("a read counts as no request: error %d", code)
	}
	if code, _ := cl.do(nbdCmdWrite, 0, 100, 5, []byte("unfl.")); code != 0 {
		t.Fatalf("write: error %d", code)
	}
	select {
	case <-cut:
		t.Fatal("cut before its request")
	default:
	}
	// The fourth write or flush: the power goes before it is applied.
	b := binary.BigEndian.AppendUint32(nil, nbdRequestMagic)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, nbdCmdWrite)
	b = binary.BigEndian.AppendUint64(b, 99)
	b = binary.BigEndian.AppendUint64(b, 200)
	b = binary.BigEndian.AppendUint32(b, 4)
	cl.send(append(b, "lost"...))
	if _, err := io.ReadFull(cl.r, make([]byte, 16)); err == nil {
		t.Fatal("the request at the cut was answered")
	}
	<-cut
	got, _ := os.ReadFile(disk)
	for off, want := range map[int]string{0: "kept", 100: ".....", 200: "...."} {
		if g := string(got[off : off+len(want)]); g != want {
			t.Errorf("after the cut, bytes at %d are %q, want %q", off, g, want)
		}
	}
	if st := s.Stats(); st.Dropped != 1 {
		t.Errorf("Dropped = %d, want 1", st.Dropped)
	}
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 18)); err == nil {
		t.Error("a connection was served while the power was off")
	}
	c.Close()
	s.PowerOn()
	dialNBD(t, s) // negotiates: served again
}
