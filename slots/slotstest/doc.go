// Package slotstest helps test code that writes images into slots and
// drives boot controls, and helps test new Slot and BootControl
// implementations.
//
// It follows testing/fstest and golang.org/x/net/nettest:
//
//   - [TestSlot] is a conformance suite any [slots.Slot] implementation
//     runs from its own tests. It makes a fresh slot per subtest and reports
//     every misbehaviour it finds, not only the first.
//   - [TestBootControl] does the same for a [slots.BootControl]. Transitions
//     across a boot are checked when the control can be booted: it
//     implements [Rebooter] (a simulated bootloader) or [slots.StartCounter]
//     (userspace-counted starts).
//   - [MemSlot] is an in-memory Slot with fault-injection knobs;
//     [BlockSlot] is one that wants aligned writes, as a partition does.
//   - [FakeBoot] is an in-memory A/B bootloader with a real boot counter,
//     with the semantics the shipped GRUB and U-Boot scripts have.
//   - [PowerCut] is a power switch shared by MemSlots and FakeBoots: it
//     cuts the power after N write operations, loses what was not synced,
//     and powers the device on again, which runs the fake bootloader.
//
// A typical power-cut test of an update step:
//
//	for n := 0; ; n++ {
//		pc := slotstest.NewPowerCut()
//		boot := slotstest.NewFakeBoot("a", "b")
//		boot.SetPowerCut(pc)
//		b := slotstest.NewMemSlot("b", 1<<20, slotstest.WithPowerCut(pc), slotstest.WithBoot(boot))
//		pc.CutAfter(n)
//		err := install(ctx, b, boot) // the code under test
//		if !pc.IsCut() {
//			break // the step completed within n writes: every cut point was tried
//		}
//		pc.Restore() // power on: the fake bootloader runs
//		// check that boot's status is consistent and the booted slot holds a good image
//	}
package slotstest
