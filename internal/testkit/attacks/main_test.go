package attacks

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs up to 8 attack scenarios at once unless -parallel says
// otherwise: a scenario spends most of its time waiting for fsync (the
// repository publishes, the device saves its state and metadata durably),
// not on the CPU, so the default of GOMAXPROCS leaves the suite idle.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", "8"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
