package smp

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR bodies of the requests and responses this package uses, as
// smp_group_0.rst (OS management) and smp_group_1.rst (image management)
// give them. Optional fields are pointers or omitempty, so that a decoded
// response tells "absent" from "zero" where the specification does.

// EchoRequest is the body of OS echo (group 0, command 0): {"d": str}.
type EchoRequest struct {
	D string `cbor:"d"`
}

// EchoResponse is {"r": str}.
type EchoResponse struct {
	Status
	R string `cbor:"r"`
}

// ResetRequest is the body of OS reset (group 0, command 5). Force asks a
// device whose application may veto a reset not to.
type ResetRequest struct {
	Force bool `cbor:"force,omitempty"`
}

// ParamsResponse is the answer to MCUmgr parameters (group 0, command 6):
// the size and number of the device's SMP buffers. A request, with its
// header, must fit one buffer.
type ParamsResponse struct {
	Status
	BufSize  uint32 `cbor:"buf_size"`
	BufCount uint32 `cbor:"buf_count"`
}

// ImageInfo is one entry of an image state response.
type ImageInfo struct {
	Image     *uint32 `cbor:"image,omitempty"`
	Slot      uint32  `cbor:"slot"`
	Version   string  `cbor:"version"`
	Hash      []byte  `cbor:"hash,omitempty"`
	Bootable  bool    `cbor:"bootable,omitempty"`
	Pending   bool    `cbor:"pending,omitempty"`
	Confirmed bool    `cbor:"confirmed,omitempty"`
	Active    bool    `cbor:"active,omitempty"`
	Permanent bool    `cbor:"permanent,omitempty"`
}

// ImageStateResponse answers image state read and write (group 1,
// command 0).
type ImageStateResponse struct {
	Status
	Images      []ImageInfo `cbor:"images"`
	SplitStatus int         `cbor:"splitStatus,omitempty"`
}

// ImageStateRequest is image state write: mark the image with Hash for
// test, or, with Confirm, make it (or, without Hash, the running image)
// permanent.
type ImageStateRequest struct {
	Hash    []byte `cbor:"hash,omitempty"`
	Confirm bool   `cbor:"confirm"`
}

// UploadRequest is one chunk of image upload (group 1, command 1). Len
// and SHA go with the chunk at offset 0 only; SHA is the SHA-256 of the
// whole upload and names the upload session, so that a device can tell a
// client where to resume it.
type UploadRequest struct {
	Image   *uint32 `cbor:"image,omitempty"`
	Len     *uint64 `cbor:"len,omitempty"`
	Off     uint64  `cbor:"off"`
	SHA     []byte  `cbor:"sha,omitempty"`
	Data    []byte  `cbor:"data"`
	Upgrade bool    `cbor:"upgrade,omitempty"`
}

// UploadResponse gives the offset the device expects next, and, after the
// last chunk, whether the upload matched its SHA.
type UploadResponse struct {
	Status
	Off   *uint64 `cbor:"off,omitempty"`
	Match *bool   `cbor:"match,omitempty"`
}

// EraseRequest is image erase (group 1, command 5); Slot defaults to 1.
type EraseRequest struct {
	Slot *uint32 `cbor:"slot,omitempty"`
}

// SlotInfoResponse answers slot info (group 1, command 6).
type SlotInfoResponse struct {
	Status
	Images []SlotInfoImage `cbor:"images"`
}

// SlotInfoImage lists the slots of one image.
type SlotInfoImage struct {
	Image        uint32     `cbor:"image"`
	Slots        []SlotSize `cbor:"slots"`
	MaxImageSize *uint64    `cbor:"max_image_size,omitempty"`
}

// SlotSize is the size of one slot.
type SlotSize struct {
	Slot uint32 `cbor:"slot"`
	Size uint64 `cbor:"size"`
}

// Status holds the error fields every response may carry: "rc" (SMP
// version 1, and SMP errors in version 2) with an optional reason "rsn",
// or "err": {"group", "rc"} (group errors in SMP version 2). A response
// without them succeeded.
type Status struct {
	RC       int         `cbor:"rc,omitempty"`
	Reason   string      `cbor:"rsn,omitempty"`
	GroupErr *GroupError `cbor:"err,omitempty"`
}

// GroupError is the SMP version 2 error of a group.
type GroupError struct {
	Group uint16 `cbor:"group"`
	RC    int    `cbor:"rc"`
}

// Err returns the error the status reports, a *DeviceError, or nil.
func (s Status) Err() error {
	switch {
	case s.GroupErr != nil && s.GroupErr.RC != 0:
		return &DeviceError{Group: Group(s.GroupErr.Group), RC: s.GroupErr.RC, Reason: s.Reason}
	case s.RC != 0:
		return &DeviceError{RC: s.RC, Reason: s.Reason, Legacy: true}
	}
	return nil
}

// status is implemented by every response type.
type status interface{ Err() error }

// MCUmgr result codes (mcumgr_err_t) callers may branch on.
const (
	RCUnknown  = 1
	RCNoMem    = 2
	RCInval    = 3
	RCTimeout  = 4
	RCNoEnt    = 5
	RCBadState = 6
	RCMsgSize  = 7
	RCNotSup   = 8
	RCCorrupt  = 9
	RCBusy     = 10
)

// DeviceError is an error the device reported in a response.
type DeviceError struct {
	// Group is the group of a version 2 group error; Legacy is set for an
	// "rc" error, whose code is an mcumgr_err_t.
	Group  Group
	Legacy bool
	RC     int
	Reason string
}

// Error describes the error with its group and code.
func (e *DeviceError) Error() string {
	s := fmt.Sprintf("smp: device error rc=%d", e.RC)
	if !e.Legacy {
		s = fmt.Sprintf("smp: device error group=%d rc=%d", e.Group, e.RC)
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// IsRC reports whether err is a legacy device error with result code rc.
func IsRC(err error, rc int) bool {
	var de *DeviceError
	return errors.As(err, &de) && de.Legacy && de.RC == rc
}

// decMode decodes device responses: indefinite lengths are allowed (zcbor
// emits them), duplicate keys and deep nesting are not.
var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      256,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// Unmarshal decodes a CBOR body strictly enough for untrusted input (a
// device's response, or a request in smptest).
func Unmarshal(body []byte, v any) error {
	if err := decMode.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return nil
}

// Marshal encodes v as a CBOR body.
func Marshal(v any) ([]byte, error) { return cbor.Marshal(v) }
