package download

import (
	"testing"
	"time"
)

// TestRetryWaitDefaults: the backoff between retries starts at
// DefaultRetryWaitMin unless RetryWaitMax is set below it (a zero Config
// once got 1 ms, and a failing server five retries within 31 ms).
func TestRetryWaitDefaults(t *testing.T) {
	tests := []struct {
		name             string
		cfg              Config
		wantMin, wantMax time.Duration
	}{
		{"zero config", Config{}, DefaultRetryWaitMin, DefaultRetryWaitMax},
		{"max below the default min", Config{RetryWaitMax: 100 * time.Millisecond}, 100 * time.Millisecond, 100 * time.Millisecond},
		{"max above the default min", Config{RetryWaitMax: time.Minute}, DefaultRetryWaitMin, time.Minute},
		{"min above the default max", Config{RetryWaitMin: time.Minute}, time.Minute, time.Minute},
		{"both set", Config{RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond}, time.Millisecond, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			if cfg.RetryWaitMin != tt.wantMin || cfg.RetryWaitMax != tt.wantMax {
				t.Errorf("RetryWaitMin, RetryWaitMax: got %v, %v; want %v, %v", cfg.RetryWaitMin, cfg.RetryWaitMax, tt.wantMin, tt.wantMax)
			}
		})
	}
}
