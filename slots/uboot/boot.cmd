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
# and, for a redundant pair of such files (fw_env.config's two lines):
#   sb_envfile2  the second copy's name ("switchback-redund.env"); each
#                copy is then a CRC32, a flags byte and the variables, and
#                RAM from sb_envaddr up to 2*sb_envsize+8 is used
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
  if test -z "${sb_envfile2}"; then
    if load ${sb_envdev} ${sb_envaddr} ${sb_envfile}; then
      env import -c ${sb_envaddr} ${sb_envsize} sb_primary sb_trial sb_tries sb_bad sb_canary
    fi
  fi
fi
if test -n "${sb_envfile2}"; then
  # Redundant pair, as U-Boot and libubootenv keep theirs: the current
  # copy is the one with a valid CRC, of two the one with the larger
  # flags (0 follows 255; equal: the first). The newer copy is imported,
  # and the older only if that fails: an import fails on a bad CRC and
  # changes nothing, and the variables were cleared above, so nothing of
  # the other copy leaks in. A missing file reads as zeros (bad CRC).
  setexpr sb_envaddr2 ${sb_envaddr} + ${sb_envsize}
  setexpr sb_scratch ${sb_envaddr2} + ${sb_envsize}
  setexpr sb_isize ${sb_envsize} - 1
  mw.b ${sb_envaddr} 0 ${sb_envsize}
  mw.b ${sb_envaddr2} 0 ${sb_envsize}
  load ${sb_envdev} ${sb_envaddr} ${sb_envfile}
  load ${sb_envdev} ${sb_envaddr2} ${sb_envfile2}
  setexpr sb_p ${sb_envaddr} + 4
  setexpr.b sb_fl1 *${sb_p}
  setexpr sb_p ${sb_envaddr2} + 4
  setexpr.b sb_fl2 *${sb_p}
  setenv sb_order "1 2"
  if itest.b ${sb_fl2} -gt ${sb_fl1}; then setenv sb_order "2 1"; fi
  if itest.b ${sb_fl1} -eq ff && itest.b ${sb_fl2} -eq 0; then setenv sb_order "2 1"; fi
  if itest.b ${sb_fl2} -eq ff && itest.b ${sb_fl1} -eq 0; then setenv sb_order "1 2"; fi
  setenv sb_cur
  for sb_i in ${sb_order}; do
    if test -z "${sb_cur}"; then
      setenv sb_p ${sb_envaddr}
      if test "${sb_i}" = 2; then setenv sb_p ${sb_envaddr2}; fi
      # env import -c wants the CRC right before the variables: move it
      # over the flags byte.
      cp.b ${sb_p} ${sb_scratch} 4
      setexpr sb_p ${sb_p} + 1
      cp.b ${sb_scratch} ${sb_p} 4
      if env import -c ${sb_p} ${sb_isize} sb_primary sb_trial sb_tries sb_bad sb_canary; then
        setenv sb_cur ${sb_i}
      fi
    fi
  done
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
  if test -n "${sb_envfile2}"; then
    # Into the copy that is not current, with the current flags + 1: a
    # torn write leaves the current copy current.
    setenv sb_w ${sb_envaddr}
    setenv sb_wfile ${sb_envfile}
    setenv sb_fl ${sb_fl2}
    if test "${sb_cur}" = 1; then
      setenv sb_w ${sb_envaddr2}
      setenv sb_wfile ${sb_envfile2}
      setenv sb_fl ${sb_fl1}
    fi
    setexpr sb_p ${sb_w} + 1
    env export -c -s ${sb_isize} ${sb_p} sb_bad sb_canary sb_primary sb_trial sb_tries
    cp.b ${sb_p} ${sb_scratch} 4
    cp.b ${sb_scratch} ${sb_w} 4
    setexpr sb_fl ${sb_fl} + 1
    setexpr sb_p ${sb_w} + 4
    mw.b ${sb_p} ${sb_fl}
    fatwrite ${sb_envdev} ${sb_w} ${sb_wfile} ${sb_envsize}
  elif test -n "${sb_envfile}"; then
    env export -c -s ${sb_envsize} ${sb_envaddr} sb_bad sb_canary sb_primary sb_trial sb_tries
    fatwrite ${sb_envdev} ${sb_envaddr} ${sb_envfile} ${sb_envsize}
  else
    saveenv
  fi
fi

setenv sb_set_root "setenv sb_root \${sb_root_${sb_boot}}"
run sb_set_root
setenv bootargs "${bootargs} root=${sb_root} switchback.slot=${sb_boot} switchback.canary=${sb_canary}"
