package uboot

import "github.com/switchback-ota/switchback/slots/internal/abenv"

// The environment variables switchback and the boot script share (the same
// for the GRUB and U-Boot backends).
const (
	VarPrimary = abenv.VarPrimary // committed slot
	VarBad     = abenv.VarBad     // space-separated slots marked bad
	VarCanary  = abenv.VarCanary  // random value, passed as switchback.canary=
	VarTries   = abenv.VarTries   // tries left for the trial, "0".."9"
	VarTrial   = abenv.VarTrial   // slot armed for trial, or empty
)

// MaxTries is the most tries Arm accepts: the boot scripts count down
// with an if-chain from 9.
const MaxTries = abenv.MaxTries

// Kernel command line parameters the boot script sets.
const (
	ParamSlot   = abenv.ParamSlot
	ParamCanary = abenv.ParamCanary
)
