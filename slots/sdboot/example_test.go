package sdboot_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots/sdboot"
)

// Arm slot b for three boots. On a device the ESP is mounted at /efi and
// the booted entry is read from /sys/firmware/efi/efivars; here a
// temporary directory stands in for an ESP set up for switchback (the
// loader.conf default a pattern, one entry per slot), booted from slot a
// as its kernel command line says.
func Example() {
	esp, err := os.MkdirTemp("", "sdboot-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(esp)
	entries := filepath.Join(esp, "loader", "entries")
	if err := os.MkdirAll(entries, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(esp, "loader", "loader.conf"), []byte("timeout 0\ndefault switchback-*\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	for _, slot := range []string{"a", "b"} {
		conf := fmt.Sprintf("title Switchback %s\nlinux /%s/vmlinuz\noptions root=PARTLABEL=rootfs_%s switchback.slot=%s rw\n", slot, slot, slot, slot)
		if err := os.WriteFile(filepath.Join(entries, "switchback-"+slot+".conf"), []byte(conf), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	cmdline := filepath.Join(esp, "cmdline") // /proc/cmdline
	if err := os.WriteFile(cmdline, []byte("root=PARTLABEL=rootfs_a switchback.slot=a rw\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	boot, err := sdboot.New(sdboot.Config{ESP: esp, Slots: []string{"a", "b"},
		EFIVarsDir: filepath.Join(esp, "no-efivars"), CmdlinePath: cmdline})
	if err != nil {
		log.Fatal(err)
	}
	if err := boot.CheckCanary(ctx); err != nil {
		log.Fatal(err) // says what to fix in loader.conf or the EFI variables
	}
	if err := boot.Arm(ctx, "b", 3); err != nil {
		log.Fatal(err)
	}
	names, err := os.ReadDir(entries)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range names {
		fmt.Println(n.Name()) // b's entry now counts its tries
	}
	// Output:
	// switchback-a.conf
	// switchback-b+3-0.conf
}

func ExampleParseEntryName() {
	n, err := sdboot.ParseEntryName("switchback-b+2-1.conf")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n.ID, n.Left, n.Done, n.Tried(), n.Blessed(), n.Cursed())
	// Output: switchback-b.conf 2 1 switchback-b+1-2.conf switchback-b.conf switchback-b+0-1.conf
}
