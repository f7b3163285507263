// Package smp updates microcontrollers behind the gateway: devices that
// run the MCUboot bootloader and an MCUmgr SMP server (Zephyr, Mynewt,
// NuttX), reached over UDP or a serial line. A [Device] is a
// [slots.BootControl] over two [slots.Slot]s, so each MCU is one
// updater.Component: the updater verifies the TUF target into a slot
// staged on the gateway, Arm sends it to the MCU, the component's restart
// hook calls [Device.Reset], and Confirm commits after [Device.ImageCheck]
// and the application's own checks pass.
//
// # Protocol
//
// SMP (the Zephyr "SMP Protocol Specification") is an 8-byte header and a
// CBOR map ([Header], [EncodePacket], [DecodePacket]); this package speaks
// the OS group (echo, reset, MCUmgr parameters) and the image group
// (state read, test, confirm, upload, erase, slot info) with
// github.com/fxamacker/cbor/v2. [Client] matches responses to requests by
// sequence number and sends a request again when its answer is lost.
// [Client.Upload] sends an image in chunks that fit the device's SMP
// buffer and always continues from the offset the device answers: a
// device that remembers the upload session (named by the image's SHA-256)
// resumes it after a dropped link or a reset.
//
// Transports: [UDP] carries one packet per datagram, over DTLS 1.2
// (github.com/pion/dtls/v4; a pre-shared key or certificates, as Zephyr's
// UDP transport offers) unless configured Plain. [Serial] carries the SMP
// console framing (base64, CRC-16, 127-byte frames) on any serial line;
// [OpenSerial] opens a port raw at a line speed.
// A serial line is not encrypted: it is a physical link, and whoever can
// tap it can reach the MCU's pins as well.
//
// # Trust
//
// The MCU does not speak TUF: the gateway verifies every byte against the
// repository's signed metadata before it writes the slot. Before anything
// is sent, Arm parses the MCUboot image strictly ([ParseImage]: magic,
// header and TLV sizes that add up to the file, the SHA-256 TLV matched
// against the bytes; encrypted and position-independent images refused)
// and, when Config.PublicKey is set, checks its ED25519 signature. The
// MCU's own MCUboot checks the signature again: a gateway can withhold or
// delay firmware, not forge it.
//
// # Trials
//
// MCUboot's swap semantics: the image is uploaded to the secondary slot
// and marked for test; at the next reset MCUboot swaps it into the
// primary slot and runs it once; unless it is confirmed, the reset after
// that swaps the old image back. The gateway confirms (Commit) only after
// its checks pass. A trial that crashes is reverted by MCUboot on its own
// (Status then reports the old slot booted and the trial out of tries, and
// the updater blocklists the release); one that fails its checks is
// marked bad, and a reset reverts it; one that hangs without its watchdog
// firing needs Config.PowerCycle (a reset line) to come back.
//
// Package smptest simulates such an MCU for tests and examples.
package smp
