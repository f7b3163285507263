package s3publish

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/switchback-ota/switchback/repository"
)

// uploadPhase uploads the files of phase ph the bucket lacks, up to
// p.concurrency at once, and returns when all are done (or the first
// failed: a later phase must not start after a failed one).
func (p *Publisher) uploadPhase(ctx context.Context, ph Phase, files map[string]localFile, remote map[string]remoteObject, res *Result) error {
	var todo []localFile
	for _, f := range files {
		if f.phase == ph {
			todo = append(todo, f)
		}
	}
	slices.SortFunc(todo, func(a, b localFile) int { return strings.Compare(a.rel, b.rel) })
	var mu sync.Mutex
	var uploaded []string
	err := p.each(ctx, len(todo), func(ctx context.Context, i int) error {
		up, err := p.sync(ctx, todo[i], remote)
		mu.Lock()
		defer mu.Unlock()
		if up {
			uploaded = append(uploaded, todo[i].rel)
		} else if err == nil {
			res.Skipped++
		}
		return err
	})
	slices.Sort(uploaded)
	res.Uploaded = append(res.Uploaded, uploaded...)
	return err
}

// each runs job(0…n-1), p.concurrency at a time, and returns the first
// error; the context of the others is cancelled then.
func (p *Publisher) each(ctx context.Context, n int, job func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(p.concurrency, n) {
		wg.Go(func() {
			for i := range next {
				if err := job(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// sync uploads f unless the bucket holds the same bytes; it reports
// whether it uploaded.
func (p *Publisher) sync(ctx context.Context, f localFile, remote map[string]remoteObject) (bool, error) {
	d, err := p.digest(f)
	if err != nil {
		return false, err
	}
	obj, present := remote[f.rel]
	switch decide(d, obj, present) {
	case skip:
		return false, nil
	case check:
		info, err := p.client.StatObject(ctx, p.bucket, p.key(f.rel), minio.StatObjectOptions{})
		if err == nil && strings.EqualFold(userMeta(info.UserMetadata, sha256Meta), d.sha256) {
			return false, nil
		}
	}
	if err := p.put(ctx, f, d); err != nil {
		return false, err
	}
	return true, nil
}

func (p *Publisher) digest(f localFile) (digest, error) {
	rc, err := f.open()
	if err != nil {
		return digest{}, fmt.Errorf("s3publish: %w", err)
	}
	defer rc.Close()
	d, err := digestOf(rc, p.partSize)
	if err != nil {
		return digest{}, fmt.Errorf("s3publish: %s: %w", f.rel, err)
	}
	return d, nil
}

// userMeta finds a user metadata value whatever the case of its key.
func userMeta(m map[string]string, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// put uploads f, whose digest is d, with its Cache-Control and content
// type; every part carries Content-MD5, so the store refuses damaged bytes.
func (p *Publisher) put(ctx context.Context, f localFile, d digest) error {
	rc, err := f.open()
	if err != nil {
		return fmt.Errorf("s3publish: %w", err)
	}
	defer rc.Close()
	ctype := "application/octet-stream"
	if f.phase != PhaseContent && path.Ext(f.rel) == ".json" {
		ctype = "application/json"
	}
	_, err = p.client.PutObject(ctx, p.bucket, p.key(f.rel), rc, d.size, minio.PutObjectOptions{
		ContentType:    ctype,
		CacheControl:   repository.CacheControl(f.rel),
		UserMetadata:   map[string]string{sha256Meta: d.sha256},
		PartSize:       uint64(p.partSize),
		SendContentMd5: true,
	})
	if err != nil {
		return fmt.Errorf("s3publish: upload %s: %w", f.rel, err)
	}
	p.log.Info("uploaded", "file", f.rel, "phase", f.phase.String(), "bytes", d.size)
	return nil
}
