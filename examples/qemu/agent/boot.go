package main

import (
	"fmt"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/grub"
	"github.com/switchback-ota/switchback/slots/uboot"
)

// Boot loaders the agent can drive (-bootloader).
const (
	loaderGRUB  = "grub"
	loaderUBoot = "uboot"
)

// bootControl returns the boot control of the -bootloader flag: GRUB's
// environment block read by switchback.cfg, or the U-Boot environment
// read by boot.cmd, whose copies fw_env.config names (two lines: a
// redundant environment).
func bootControl(c config) (slots.BootControl, error) {
	switch c.bootloader {
	case loaderGRUB:
		return grub.New(c.grubenv, []string{"a", "b"})
	case loaderUBoot:
		devs, err := uboot.LoadFwEnvConfig(c.fwEnvConfig)
		if err != nil {
			return nil, err
		}
		return uboot.New(devs, []string{"a", "b"})
	default:
		return nil, fmt.Errorf("-bootloader %q: want %s or %s", c.bootloader, loaderGRUB, loaderUBoot)
	}
}
