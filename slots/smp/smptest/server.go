package smptest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots/smp"
)

// handle answers one SMP request packet; nil means no answer (the MCU is
// off, resetting, silent, or the packet is not SMP).
func (m *MCU) handle(pkt []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != running || m.behavior.Silent {
		return nil
	}
	h, body, err := smp.DecodePacket(pkt)
	if err != nil || h.Op == smp.OpReadRsp || h.Op == smp.OpWriteRsp {
		return nil
	}
	var resp any
	if len(pkt) > m.cfg.BufSize {
		resp = smp.Status{RC: smp.RCMsgSize}
	} else {
		resp, err = m.dispatch(h, body)
	}
	if errors.Is(err, errPowerCut) {
		m.event("power cut during group %d command %d", h.Group, h.ID)
		m.powerOff()
		return nil
	}
	if err != nil {
		resp = smp.Status{RC: smp.RCUnknown, Reason: err.Error()}
	}
	out, err := smp.Marshal(resp)
	if err != nil {
		return nil
	}
	h.Op++
	p, err := smp.EncodePacket(h, out)
	if err != nil {
		return nil
	}
	return p
}

// rcError is an MCUmgr result code a handler answers with.
type rcError int

func (e rcError) Error() string { return fmt.Sprintf("mcumgr rc %d", int(e)) }

func (m *MCU) dispatch(h smp.Header, body []byte) (any, error) {
	type key struct {
		g  smp.Group
		id uint8
	}
	handlers := map[key]func(smp.Header, []byte) (any, error){
		{smp.GroupOS, smp.CmdEcho}:           m.echo,
		{smp.GroupOS, smp.CmdReset}:          m.resetCmd,
		{smp.GroupOS, smp.CmdParams}:         m.params,
		{smp.GroupImage, smp.CmdImageState}:  m.imageStateCmd,
		{smp.GroupImage, smp.CmdImageUpload}: m.uploadCmd,
		{smp.GroupImage, smp.CmdImageErase}:  m.eraseCmd,
		{smp.GroupImage, smp.CmdSlotInfo}:    m.slotInfo,
	}
	f, ok := handlers[key{h.Group, h.ID}]
	if !ok {
		return smp.Status{RC: smp.RCNotSup}, nil
	}
	resp, err := f(h, body)
	var rc rcError
	if errors.As(err, &rc) {
		return smp.Status{RC: int(rc)}, nil
	}
	return resp, err
}

func (m *MCU) echo(_ smp.Header, body []byte) (any, error) {
	var req smp.EchoRequest
	if smp.Unmarshal(body, &req) != nil {
		return nil, rcError(smp.RCInval)
	}
	return smp.EchoResponse{R: req.D}, nil
}

func (m *MCU) resetCmd(smp.Header, []byte) (any, error) {
	m.state = resetting
	go m.reset()
	return smp.Status{}, nil
}

func (m *MCU) params(smp.Header, []byte) (any, error) {
	return smp.ParamsResponse{BufSize: uint32(m.cfg.BufSize), BufCount: uint32(m.cfg.BufCount)}, nil
}

func (m *MCU) slotInfo(smp.Header, []byte) (any, error) {
	size := uint64(m.flash.imageArea())
	return smp.SlotInfoResponse{Images: []smp.SlotInfoImage{{
		Slots:        []smp.SlotSize{{Slot: 0, Size: size}, {Slot: 1, Size: size}},
		MaxImageSize: &size,
	}}}, nil
}

// images is the image state as Zephyr's img_mgmt reports it for one image
// pair in swap mode: slot 0 is always active; it is confirmed unless a
// revert is pending, in which case slot 1 (the image to revert to) is;
// slot 1 is pending when a test or a permanent swap is requested.
func (m *MCU) images() (smp.ImageStateResponse, error) {
	p, err := m.flash.trailer(primary)
	if err != nil {
		return smp.ImageStateResponse{}, err
	}
	s, err := m.flash.trailer(secondary)
	if err != nil {
		return smp.ImageStateResponse{}, err
	}
	typ := pendingSwap(p, s)
	var r smp.ImageStateResponse
	for _, sl := range []slot{primary, secondary} {
		im, err := m.slotHeader(sl)
		if err != nil {
			continue // MCUmgr lists valid images only
		}
		info := smp.ImageInfo{Slot: uint32(sl), Version: im.Version.String(), Hash: im.Hash, Bootable: true}
		if sl == primary {
			info.Active = true
			info.Confirmed = typ != swapRevert
			if m.behavior.ReportHash != nil {
				info.Hash = m.behavior.ReportHash
			}
		} else {
			info.Pending = typ == swapTest || typ == swapPerm
			info.Permanent = typ == swapPerm
			info.Confirmed = typ == swapRevert
		}
		r.Images = append(r.Images, info)
	}
	return r, nil
}

func (m *MCU) imageStateCmd(h smp.Header, body []byte) (any, error) {
	if h.Op == smp.OpRead {
		return m.images()
	}
	var req smp.ImageStateRequest
	if smp.Unmarshal(body, &req) != nil {
		return nil, rcError(smp.RCInval)
	}
	st, err := m.images()
	if err != nil {
		return nil, err
	}
	if err := m.setState(req, st); err != nil {
		return nil, err
	}
	return m.images()
}

// setState marks the secondary image for test (or, with confirm, for a
// permanent swap), or confirms the running image.
func (m *MCU) setState(req smp.ImageStateRequest, st smp.ImageStateResponse) error {
	var active, second *smp.ImageInfo
	for i := range st.Images {
		if st.Images[i].Slot == 0 {
			active = &st.Images[i]
		} else {
			second = &st.Images[i]
		}
	}
	f := m.flash
	if req.Confirm && (req.Hash == nil || active != nil && bytes.Equal(req.Hash, m.image.Hash)) {
		p, err := f.trailer(primary)
		if err != nil || !p.magic || p.imageOK == flagSet {
			return err // nothing to confirm: the image is permanent already
		}
		p.imageOK = flagSet
		return f.writeTrailer(primary, p)
	}
	switch {
	case second == nil || !bytes.Equal(req.Hash, second.Hash):
		return rcError(smp.RCNoEnt)
	case second.Confirmed:
		return rcError(smp.RCBadState) // the image to revert to
	}
	if _, err := m.slotImage(secondary); err != nil {
		return rcError(smp.RCBadState)
	}
	t := erasedTrailer(f.maxSectors)
	t.magic, t.imageOK = true, flagUnset
	if req.Confirm {
		t.imageOK = flagSet
	}
	return f.writeTrailer(secondary, t)
}

// secondaryBusy reports whether the secondary slot must not be written:
// it is pending, or holds the image a revert goes back to.
func (m *MCU) secondaryBusy() (bool, error) {
	p, err := m.flash.trailer(primary)
	if err != nil {
		return false, err
	}
	s, err := m.flash.trailer(secondary)
	if err != nil {
		return false, err
	}
	return pendingSwap(p, s) != swapNone, nil
}

func (m *MCU) eraseCmd(smp.Header, []byte) (any, error) {
	if busy, err := m.secondaryBusy(); err != nil || busy {
		if err != nil {
			return nil, err
		}
		return nil, rcError(smp.RCBadState)
	}
	if err := m.eraseSlot(secondary); err != nil {
		return nil, err
	}
	m.session = nil
	return smp.Status{}, m.saveSession()
}

// uploadSession is the upload in progress. Kept in flash (a record in
// its own file, written in place) unless Config.ForgetUpload is set.
type uploadSession struct {
	SHA []byte
	Len uint64
	Off uint64
}

// The session record: a valid byte (1), the length of the SHA, the SHA
// (up to 32 bytes), the image length and the offset reached.
const sessionSize = 1 + 1 + 32 + 8 + 8

func sessionPath(dir string) string { return filepath.Join(dir, "upload-session.bin") }

func loadSession(dir string) *uploadSession {
	b, err := os.ReadFile(sessionPath(dir))
	if err != nil || len(b) != sessionSize || b[0] != 1 || b[1] > 32 {
		return nil
	}
	s := &uploadSession{Len: binary.LittleEndian.Uint64(b[34:]), Off: binary.LittleEndian.Uint64(b[42:])}
	if b[1] > 0 {
		s.SHA = bytes.Clone(b[2 : 2+b[1]])
	}
	return s
}

// saveSession records the session (one flash operation).
func (m *MCU) saveSession() error {
	if m.cfg.ForgetUpload {
		return nil
	}
	if err := m.flash.op(); err != nil {
		return err
	}
	b := make([]byte, sessionSize)
	if s := m.session; s != nil && len(s.SHA) <= 32 {
		b[0], b[1] = 1, byte(len(s.SHA))
		copy(b[2:], s.SHA)
		binary.LittleEndian.PutUint64(b[34:], s.Len)
		binary.LittleEndian.PutUint64(b[42:], s.Off)
	}
	if m.sessionFile == nil {
		f, err := os.OpenFile(sessionPath(m.cfg.Dir), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		m.sessionFile = f
	}
	_, err := m.sessionFile.WriteAt(b, 0)
	return err
}

func (m *MCU) uploadCmd(_ smp.Header, body []byte) (any, error) {
	var req smp.UploadRequest
	if smp.Unmarshal(body, &req) != nil {
		return nil, rcError(smp.RCInval)
	}
	if busy, err := m.secondaryBusy(); err != nil || busy {
		if err != nil {
			return nil, err
		}
		return nil, rcError(smp.RCBadState)
	}
	if req.Off == 0 {
		if resp, done := m.resumeSession(req); done {
			return resp, nil
		}
		if err := m.newSession(req); err != nil {
			return nil, err
		}
	}
	s := m.session
	if s == nil || req.Off != s.Off {
		// Not where the MCU stands: drop the data, say where it stands.
		off := uint64(0)
		if s != nil {
			off = s.Off
		}
		return smp.UploadResponse{Off: &off}, nil
	}
	if req.Off+uint64(len(req.Data)) > s.Len {
		return nil, rcError(smp.RCInval)
	}
	if err := m.flash.write(secondary, int64(req.Off), req.Data); err != nil {
		return nil, err
	}
	s.Off += uint64(len(req.Data))
	if err := m.saveSession(); err != nil {
		return nil, err
	}
	resp := smp.UploadResponse{Off: &s.Off}
	if s.Off == s.Len && s.SHA != nil {
		match := m.uploadMatches(s)
		resp.Match = &match
	}
	return resp, nil
}

// resumeSession answers a first chunk that names the session in progress
// with the offset reached (smp_group_1.rst: "If library gets request with
// "off" equal zero it checks stored "sha" ... and if it matches it will
// respond ... with offset that it should continue with").
func (m *MCU) resumeSession(req smp.UploadRequest) (any, bool) {
	s := m.session
	if s == nil || req.SHA == nil || req.Len == nil || !bytes.Equal(req.SHA, s.SHA) || *req.Len != s.Len || s.Off == 0 {
		return nil, false
	}
	off := s.Off
	return smp.UploadResponse{Off: &off}, true
}

// newSession erases the secondary slot for a new upload.
func (m *MCU) newSession(req smp.UploadRequest) error {
	if req.Len == nil || *req.Len == 0 {
		return rcError(smp.RCInval)
	}
	if int64(*req.Len) > m.flash.imageArea() {
		return rcError(smp.RCNoMem)
	}
	m.session = nil
	if err := m.saveSession(); err != nil {
		return err
	}
	if err := m.eraseSlot(secondary); err != nil {
		return err
	}
	m.session = &uploadSession{SHA: req.SHA, Len: *req.Len}
	return nil
}

func (m *MCU) uploadMatches(s *uploadSession) bool {
	b, err := m.flash.read(secondary, 0, int(s.Len))
	if err != nil {
		return false
	}
	sum := sha256.Sum256(b)
	return bytes.Equal(sum[:], s.SHA)
}
