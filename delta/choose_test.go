package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestChooseChunkingPicks checks that the choice follows how the image
// changed: a few blocks rewritten in place, data shifted by an insertion,
// everything new.
func TestChooseChunkingPicks(t *testing.T) {
	base := randBytes(30, 256<<10)
	blocks := bytes.Clone(base)
	for _, off := range []int{8 << 12, 30 << 12, 50 << 12} {
		copy(blocks[off:], randBytes(uint64(off), 4096))
	}
	tests := []struct {
		name string
		new  []byte
		want IndexOptions
	}{
		{"blocks rewritten", blocks, IndexOptions{Chunking: ChunkFixed, BlockSize: 4096}},
		{"shifted", cat([]byte("inserted at the start"), base), IndexOptions{Chunking: ChunkCDC, AvgSize: 4096}},
		{"all new", randBytes(31, 256<<10), IndexOptions{Chunking: ChunkCDC, AvgSize: 16384}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			best, costs, err := ChooseChunking(t.Context(), bytes.NewReader(tt.new), int64(len(tt.new)),
				bytes.NewReader(base), int64(len(base)), nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := tt.want.withDefaults()
			if best.Options != want {
				t.Errorf("got %+v, want %+v; costs %+v", best.Options, want, costs)
			}
			if len(costs) != len(Chunkings()) {
				t.Errorf("got %d costs, want %d", len(costs), len(Chunkings()))
			}
		})
	}
}

// TestChooseChunkingCost checks the estimate against the pack WritePack
// writes: the frames of the chunks the plan fetches, and the table.
func TestChooseChunkingCost(t *testing.T) {
	// Each subtest makes three encoders of the best level, slow under the
	// race detector: CDC on every pair, fixed blocks on a few.
	fixed := map[string]bool{"block edit": true, "all new": true, "odd tail": true}
	for _, o := range []IndexOptions{testChunkings[0], testChunkings[2]} {
		for _, pair := range imagePairs() {
			if o.Chunking != ChunkCDC && !fixed[pair.name] {
				continue
			}
			t.Run(fmt.Sprintf("%s-%d-%d/%s", o.Chunking, o.BlockSize, o.AvgSize, pair.name), func(t *testing.T) {
				_, costs, err := ChooseChunking(t.Context(), bytes.NewReader(pair.new), int64(len(pair.new)),
					bytes.NewReader(pair.base), int64(len(pair.base)), []IndexOptions{o})
				if err != nil {
					t.Fatal(err)
				}
				got := costs[0]
				ni := mustIndex(t, pair.new, o)
				bi := mustIndex(t, pair.base, ni.Options())
				_, tab := mustPack(t, ni, pair.new)
				p, err := NewPlan(ni, []Base{{Index: bi}}, PlanOptions{})
				if err != nil {
					t.Fatal(err)
				}
				// Each distinct missing chunk once (repeats are copied).
				entries, fetched := PackEntries(ni), map[int]bool{}
				var frames int64
				for i := range ni.Chunks() {
					if p.from[i].base < 0 && !fetched[entries[i]] {
						fetched[entries[i]] = true
						_, n := tab.Span(entries[i])
						frames += n
					}
				}
				if got.Fetched != len(fetched) || got.FetchBytes != frames {
					t.Errorf("fetch: got %d chunks, %d bytes; want %d, %d", got.Fetched, got.FetchBytes, len(fetched), frames)
				}
				if n, err := p.PackBytes(tab); n != frames || err != nil {
					t.Errorf("PackBytes: got %d, %v; want %d", n, err, frames)
				}
				tb, _ := tab.MarshalBinary()
				// Entries not fetched are priced at their uncompressed
				// length: at most a byte more each.
				if slack := int64(tab.Len() - len(fetched)); got.TableBytes < int64(len(tb)) || got.TableBytes > int64(len(tb))+slack {
					t.Errorf("table: got %d bytes, want %d (+ up to %d)", got.TableBytes, len(tb), slack)
				}
				if got.IndexBytes <= 0 || got.Options != ni.Options() {
					t.Errorf("index: got %d bytes, options %+v", got.IndexBytes, got.Options)
				}
			})
		}
	}
}

func TestChooseChunkingErrors(t *testing.T) {
	img := randBytes(32, 10000)
	r := bytes.NewReader(img)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := ChooseChunking(ctx, r, int64(len(img)), r, int64(len(img)), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
	if _, _, err := ChooseChunking(t.Context(), r, int64(len(img)), r, int64(len(img)), []IndexOptions{{Chunking: "rolling"}}); err == nil {
		t.Error("unknown chunking: got no error")
	}
}
