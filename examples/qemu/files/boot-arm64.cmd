# switchback QEMU example (arm64): boot.scr on the boot partition, run by
# U-Boot's distro boot (qemu_arm64 build of Debian's u-boot-qemu).
# The boot-count logic is the library's slots/uboot/boot.cmd, compiled to
# switchback.scr next to this file; this script names the slots and the
# redundant pair of environment files it keeps them in, sources it, and
# boots the slot it picked: the kernel Image (gzip-compressed, as
# /boot/vmlinuz) and the initramfs from that slot's /boot.
# RAM starts at 0x40000000; scriptaddr (0x40200000) holds this
# script, kernel_addr_r 0x40400000 and ramdisk_addr_r 0x44000000.
setenv sb_slots "a b"
setenv sb_root_a /dev/vda2
setenv sb_root_b /dev/vda3
setenv sb_envdev "virtio 0:1"
setenv sb_envfile switchback.env
setenv sb_envfile2 switchback-redund.env
setenv sb_envaddr 0x49000000
setenv sb_envsize 0x4000
setenv bootargs "console=ttyAMA0 ro quiet panic=2"
load virtio 0:1 0x4a000000 switchback.scr
source 0x4a000000
echo "u-boot: booting slot ${sb_boot} (primary=${sb_primary} trial=${sb_trial} tries=${sb_tries} bad=${sb_bad})"
setenv sb_part 2
if test "${sb_boot}" = b; then setenv sb_part 3; fi
if load virtio 0:${sb_part} 0x4c000000 /boot/vmlinuz && unzip 0x4c000000 ${kernel_addr_r} && load virtio 0:${sb_part} ${ramdisk_addr_r} /boot/initrd.img; then
  booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
fi
# Not bootable (a slot with no kernel): reset, as a panic would; boot.cmd
# has counted the try.
echo "u-boot: cannot boot slot ${sb_boot}; resetting"
reset
