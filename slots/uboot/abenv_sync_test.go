package uboot

import (
	"os"
	"strings"
	"testing"
)

// abenv.go is shared with slots/grub by copy (the packages must not
// import each other); this keeps the copies equal past their first lines.
func TestABEnvSameAsGrub(t *testing.T) {
	ours, err := os.ReadFile("abenv.go")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile("../grub/abenv.go")
	if err != nil {
		t.Skipf("slots/grub not beside this package: %v", err)
	}
	body := func(b []byte) string {
		_, rest, _ := strings.Cut(string(b), "\nimport (")
		return rest
	}
	if body(ours) != body(theirs) {
		t.Errorf("slots/uboot/abenv.go and slots/grub/abenv.go differ after their headers: change both")
	}
}
