package main

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/switchback-ota/switchback/slots/smp"
)

// TestUploadFrames checks the baseline's frames: each an image upload
// request that fits the buffer, at the offset where the previous one
// ended, the first naming the length and SHA-256, the data adding up to
// the image, and every frame but the last full (as smp.Client.Upload
// fills them). A buffer too small for the first frame's fields is an
// error.
func TestUploadFrames(t *testing.T) {
	for _, tc := range []struct {
		imgLen, buf int
		wantErr     bool
	}{
		{1, 128, false}, {100, 128, false}, {1000, 128, false}, {5000, 384, false},
		{70_000, 384, false}, {70_000, 2048, false}, {300, 2048, false}, {100, 64, true},
	} {
		img := make([]byte, tc.imgLen)
		for i := range img {
			img[i] = byte(i * 7)
		}
		frames, err := uploadFrames(img, tc.buf)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%d bytes, buffer %d: %d frames, want an error", tc.imgLen, tc.buf, len(frames))
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d bytes, buffer %d: %v", tc.imgLen, tc.buf, err)
		}
		var got []byte
		for i, f := range frames {
			h, body, err := smp.DecodePacket(f)
			if err != nil {
				t.Fatalf("%d bytes, buffer %d, frame %d: %v", tc.imgLen, tc.buf, i, err)
			}
			var req smp.UploadRequest
			if err := smp.Unmarshal(body, &req); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if h.Group != smp.GroupImage || h.ID != smp.CmdImageUpload || h.Op != smp.OpWrite {
				t.Errorf("frame %d: header %+v, want an image upload write", i, h)
			}
			if len(f) > tc.buf || i < len(frames)-1 && len(f) < tc.buf-2 {
				t.Errorf("%d bytes, buffer %d, frame %d: %d bytes, want the buffer filled (to the byte or two of a CBOR length prefix)", tc.imgLen, tc.buf, i, len(f))
			}
			if req.Off != uint64(len(got)) {
				t.Errorf("frame %d at offset %d, want %d", i, req.Off, len(got))
			}
			sum := sha256.Sum256(img)
			if i == 0 && (req.Len == nil || *req.Len != uint64(tc.imgLen) || !bytes.Equal(req.SHA, sum[:])) {
				t.Errorf("first frame: len %v, sha %x; want %d and the image's SHA-256", req.Len, req.SHA, tc.imgLen)
			}
			got = append(got, req.Data...)
		}
		if !bytes.Equal(got, img) {
			t.Errorf("%d bytes, buffer %d: the frames carry %d bytes that differ from the image", tc.imgLen, tc.buf, len(got))
		}
	}
}
