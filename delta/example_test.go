package delta_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/switchback-ota/switchback/delta"
)

func release(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// An adaptive delta: the publisher indexes the new image, the device
// reuses the chunks its running slot holds and fetches the rest as byte
// ranges from a static server.
func Example_adaptive() {
	running := release(1, 1<<20)
	next := bytes.Clone(running)
	copy(next[300000:], release(2, 20000)) // a changed file

	// Publisher side: the index is published as a TUF target beside the
	// uncompressed image.
	newIndex, err := delta.BuildIndex(bytes.NewReader(next), delta.IndexOptions{})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(next))
	}))
	defer srv.Close()

	// Device side: the running slot's index was kept when it was written.
	w, _ := delta.NewIndexWriter(newIndex.Options())
	w.Write(running)
	runningIndex, _ := w.Index()

	plan, err := delta.NewPlan(newIndex, []delta.Base{{Index: runningIndex}}, delta.PlanOptions{})
	if err != nil {
		log.Fatal(err)
	}
	var slot bytes.Buffer
	h := sha256.New()
	src := delta.Source{Range: delta.HTTPRange(srv.Client(), srv.URL)}
	if err := delta.Apply(context.Background(), plan, []io.ReaderAt{bytes.NewReader(running)}, src, io.MultiWriter(&slot, h)); err != nil {
		log.Fatal(err) // fall back to the full image
	}
	st := plan.Stats()
	fmt.Printf("fetched %d of %d bytes in %d request(s)\n", st.FetchBytes, newIndex.Length(), st.Requests)
	fmt.Println("image verified:", bytes.Equal(h.Sum(nil), sumOf(next)))
	// Output:
	// fetched 24576 of 1048576 bytes in 1 request(s)
	// image verified: true
}

// A static patch from one known release to the next.
func Example_patch() {
	base := release(3, 1<<20)
	next := append(bytes.Clone(base[:500000]), append([]byte("an inserted line\n"), base[500000:]...)...)

	var patch bytes.Buffer
	if err := delta.Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(next), &patch, delta.DiffOptions{}); err != nil {
		log.Fatal(err)
	}
	var out bytes.Buffer
	if err := delta.Patch(bytes.NewReader(base), &patch, &out); err != nil {
		log.Fatal(err) // fall back to the adaptive delta or the full image
	}
	fmt.Println("patched image is the new release:", bytes.Equal(out.Bytes(), next))
	// Output:
	// patched image is the new release: true
}

// A static patch install interrupted after a frame, then resumed from the
// checkpoint: only the patch bytes after it are read again.
func ExampleApplyPatch() {
	base := release(4, 1<<20)
	next := append(release(5, 200000), base[200000:]...) // 200 kB of new bytes
	var patch bytes.Buffer
	if err := delta.Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(next), &patch, delta.DiffOptions{FrameSize: 64 << 10}); err != nil {
		log.Fatal(err)
	}
	p := patch.Bytes()

	// The first attempt stops after its first checkpoint (a power cut).
	// A device syncs the slot, then stores the checkpoint durably.
	var slot bytes.Buffer
	var saved []byte
	errPowerCut := errors.New("power cut")
	err := delta.ApplyPatch(bytes.NewReader(base), bytes.NewReader(p), &slot, delta.PatchOptions{
		Checkpoint: func(c delta.PatchCheckpoint) error {
			saved, _ = c.MarshalBinary()
			return errPowerCut
		},
	})
	if !errors.Is(err, errPowerCut) {
		log.Fatal(err)
	}

	// After power-on: fetch the patch from PatchOffset (an HTTP Range
	// request) and write the slot from OutputOffset.
	var ck delta.PatchCheckpoint
	if err := ck.UnmarshalBinary(saved); err != nil {
		log.Fatal(err) // start over from byte 0
	}
	slot.Truncate(int(ck.OutputOffset))
	rest := bytes.NewReader(p[ck.PatchOffset:])
	if err := delta.ApplyPatch(bytes.NewReader(base), rest, &slot, delta.PatchOptions{From: &ck}); err != nil {
		log.Fatal(err) // fall back to the adaptive delta or the full image
	}
	fmt.Println("resumed past the start:", ck.PatchOffset > 0)
	fmt.Println("patched image is the new release:", bytes.Equal(slot.Bytes(), next))
	// Output:
	// resumed past the start: true
	// patched image is the new release: true
}

func sumOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// The publisher picks the chunking of a release's index from the release
// devices run now: here a header grew by a few bytes and shifted the rest,
// which fixed blocks cannot follow.
func ExampleChooseChunking() {
	running := release(3, 256<<10)
	next := append([]byte("a longer header "), running...)
	best, costs, err := delta.ChooseChunking(context.Background(), bytes.NewReader(next), int64(len(next)),
		bytes.NewReader(running), int64(len(running)), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range costs {
		fmt.Printf("%s avg %d: %d chunks to fetch\n", c.Options.Chunking, c.Options.AvgSize, c.Fetched)
	}
	// Then BuildIndex(image, best.Options), WritePack, and publish both.
	fmt.Printf("chosen: %s avg %d\n", best.Options.Chunking, best.Options.AvgSize)
	// Output:
	// fixed avg 4096: 65 chunks to fetch
	// cdc avg 4096: 1 chunks to fetch
	// cdc avg 16384: 1 chunks to fetch
	// chosen: cdc avg 4096
}
