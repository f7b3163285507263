# boot.cmd: switchback A/B slot choice with a boot counter, for U-Boot.
# Build: mkimage -A arm64 -T script -C none -n switchback -d boot.cmd boot.scr
#
# Set before sourcing it (in the default environment or a wrapper script):
#   sb_slots     slot names, space-separated ("a b"); the first is the
#                default primary
#   sb_root_<s>  for each slot s, the kernel's root= (PARTLABEL=rootfs_a)
# and, to keep switchback's variables in a file of their own (a checksummed
# blob, single copy, as "env export -c" writes it):
#   sb_envdev    the device and partition of the file ("virtio 0:1")
#   sb_envfile   its name ("switchback.env")
#   sb_envaddr   a free RAM address for it (not loadaddr/scriptaddr)
#   sb_envsize   its size in bytes, hexadecimal (0x4000)
# Without sb_envfile the variables live in U-Boot's own environment and
# the count-down is saved with saveenv (redundant if U-Boot's is).
#
# It sets sb_boot (the slot to boot), sb_root (its root=) and appends
#   root=${sb_root} switchback.slot=${sb_boot} switchback.canary=${sb_canary}
# to bootargs. When it boots a trial it saves the decremented sb_tries
# first, so that a trial that hangs uses up its tries.

if test -n "${sb_envfile}"; then
  # The blob holds switchback's variables only; a missing file or a bad
  # CRC (a torn write) leaves them empty: the first slot boots.
  setenv sb_primary
  setenv sb_trial
  setenv sb_tries
  setenv sb_bad
  setenv sb_canary
  if load ${sb_envdev} ${sb_envaddr} ${sb_envfile}; then
    env import -c ${sb_envaddr} ${sb_envsize} sb_primary sb_trial sb_tries sb_bad sb_canary
  fi
fi

# The primary, if it names a slot; else the first slot.
setenv sb_boot
setenv sb_default
for sb_s in ${sb_slots}; do
  if test -z "${sb_default}"; then setenv sb_default ${sb_s}; fi
  if test "${sb_primary}" = "${sb_s}"; then setenv sb_boot ${sb_s}; fi
done
if test -z "${sb_boot}"; then setenv sb_boot ${sb_default}; fi

# The trial, if it names a slot not marked bad.
setenv sb_try
for sb_s in ${sb_slots}; do
  if test -n "${sb_trial}" && test "${sb_trial}" = "${sb_s}"; then setenv sb_try ${sb_s}; fi
done
for sb_s in ${sb_bad}; do
  if test "${sb_try}" = "${sb_s}"; then setenv sb_try; fi
done

# Consume one try (1..9; setexpr counts in hexadecimal, the same digits)
# and save it before booting the trial. With no try left the trial stays
# recorded with sb_tries=0, so that userspace sees it fell back.
if test -n "${sb_try}" && test "${sb_tries}" -ge 1 && test "${sb_tries}" -le 9; then
  setexpr sb_tries ${sb_tries} - 1
  setenv sb_boot ${sb_try}
  # Keep the script's scratch variables out of a saved environment.
  setenv sb_s
  setenv sb_try
  setenv sb_default
  if test -n "${sb_envfile}"; then
    env export -c -s ${sb_envsize} ${sb_envaddr} sb_bad sb_canary sb_primary sb_trial sb_tries
    fatwrite ${sb_envdev} ${sb_envaddr} ${sb_envfile} ${sb_envsize}
  else
    saveenv
  fi
fi

setenv sb_set_root "setenv sb_root \${sb_root_${sb_boot}}"
run sb_set_root
setenv bootargs "${bootargs} root=${sb_root} switchback.slot=${sb_boot} switchback.canary=${sb_canary}"
