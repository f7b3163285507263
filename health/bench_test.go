package health

import (
	"context"
	"os"
	"testing"
)

func BenchmarkParseMeminfo(b *testing.B) {
	data, err := os.ReadFile("testdata/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := parseMeminfo(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAll measures what the combinator adds around eight trivial
// checks: goroutines, timing, joining.
func BenchmarkAll(b *testing.B) {
	checks := make([]HealthCheck, 8)
	for i := range checks {
		checks[i] = pass("x")
	}
	all := All(checks...)
	ctx := context.Background()
	for b.Loop() {
		if err := all.Check(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
