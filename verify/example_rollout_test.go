package verify_test

import (
	"fmt"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// A staged rollout: 1 % at the start, 10 % after a day, everyone after
// three days, growing linearly in between.
func ExampleRollout() {
	ro := verify.Rollout{
		Start: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		Salt:  "rootfs-1.4.0",
		Ramp:  []verify.RampPoint{{After: "0s", Percent: 1}, {After: "24h", Percent: 10}, {After: "72h", Percent: 100}},
	}
	for _, h := range []int{-1, 0, 12, 24, 48, 72} {
		fmt.Printf("%3dh: %5.1f%%\n", h, ro.Share(ro.Start.Add(time.Duration(h)*time.Hour)))
	}
	// Output:
	//  -1h:   0.0%
	//   0h:   1.0%
	//  12h:   5.5%
	//  24h:  10.0%
	//  48h:  55.0%
	//  72h: 100.0%
}
