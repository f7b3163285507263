package sdboot_test

import (
	"context"
	"fmt"
	"log"

	"github.com/switchback-ota/switchback/slots/sdboot"
)

// Arm slot b for three boots on an ESP mounted at /efi.
func Example() {
	ctx := context.Background()
	boot, err := sdboot.New(sdboot.Config{ESP: "/efi", Slots: []string{"a", "b"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := boot.CheckCanary(ctx); err != nil {
		log.Fatal(err) // says what to fix in loader.conf or the EFI variables
	}
	if err := boot.Arm(ctx, "b", 3); err != nil {
		log.Fatal(err)
	}
}

func ExampleParseEntryName() {
	n, err := sdboot.ParseEntryName("switchback-b+2-1.conf")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n.ID, n.Left, n.Done, n.Tried(), n.Blessed(), n.Cursed())
	// Output: switchback-b.conf 2 1 switchback-b+1-2.conf switchback-b.conf switchback-b+0-1.conf
}
