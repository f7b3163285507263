package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/repository"
)

// files is a repeatable flag of file names (not split on commas).
type files []string

func (l *files) String() string { return fmt.Sprint(*l) }
func (l *files) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*l = append(*l, v)
	return nil
}

// cmdDelta publishes the deltas of an image target already added: its
// chunk index (-index) and a static patch from each -base image.
func cmdDelta(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("delta", "", stderr)
	target := fs.String("target", "", "target path of the full image, already added (required)")
	image := fs.String("image", "", "the release image `file`, uncompressed, as given to add (required)")
	var bases files
	fs.Var(&bases, "base", "image `file` of a release devices may run: publish a patch from it (repeatable)")
	index := fs.Bool("index", false, "publish the chunk index, for adaptive deltas")
	chunking := fs.String("chunking", string(delta.ChunkFixed), "chunking of the index: fixed (ext4 and other block file systems), cdc (squashfs, tarballs), or auto: the one whose adaptive delta from the first -base costs the fewest bytes (delta.ChooseChunking)")
	store := fs.Bool("store", false, "also write the chunk store and the chunk pack under targets/"+repository.ChunkStoreDir+"/ (always done for a zstd target)")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	usageErr := func(format string, a ...any) int {
		return fail(stderr, "delta", fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...))
	}
	switch {
	case *target == "":
		return usageErr("-target is required")
	case *image == "":
		return usageErr("-image is required")
	case !*index && len(bases) == 0:
		return usageErr("nothing to publish: give -index and/or -base")
	case !*index && (*store || flagSet(fs, "chunking")):
		return usageErr("-store and -chunking need -index")
	}
	opts, err := indexOptions(ctx, *chunking, *index, *image, bases, stdout)
	if err != nil {
		return fail(stderr, "delta", err)
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "delta", err)
	}
	added := func(t repository.Target) {
		fmt.Fprintf(stdout, "added %s (%d bytes, sha256 %s)\n", t.Path, t.Length, t.SHA256)
	}
	for _, b := range bases {
		t, err := addPatch(ctx, r, *target, b, *image)
		if err != nil {
			return fail(stderr, "delta", err)
		}
		added(t)
	}
	if *index {
		img, err := os.Open(*image)
		if err != nil {
			return fail(stderr, "delta", err)
		}
		t, err := r.AddChunkIndex(ctx, *target, img, opts, *store)
		img.Close()
		if err != nil {
			return fail(stderr, "delta", err)
		}
		added(t)
	}
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "delta", stdout, stderr)
}

// indexOptions returns the index options -chunking names; for auto (with
// -index), the chunking chooseChunking picks from the first base.
func indexOptions(ctx context.Context, chunking string, index bool, image string, bases files, stdout io.Writer) (delta.IndexOptions, error) {
	opts := delta.IndexOptions{Chunking: delta.Chunking(chunking)}
	switch {
	case opts.Chunking == delta.ChunkFixed || opts.Chunking == delta.ChunkCDC:
		return opts, nil
	case chunking != "auto":
		return opts, fmt.Errorf("%w: -chunking %q: want fixed, cdc or auto", errUsage, chunking)
	case len(bases) == 0:
		return opts, fmt.Errorf("%w: -chunking auto needs a -base: the release devices run now", errUsage)
	case !index:
		return opts, nil
	}
	return chooseChunking(ctx, image, bases[0], stdout)
}

// chooseChunking returns the chunking whose adaptive delta of image from
// base fetches the fewest bytes, and says so on stdout.
func chooseChunking(ctx context.Context, image, base string, stdout io.Writer) (delta.IndexOptions, error) {
	open := func(name string) (*os.File, int64, error) {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	img, n, err := open(image)
	if err != nil {
		return delta.IndexOptions{}, err
	}
	defer img.Close()
	b, bn, err := open(base)
	if err != nil {
		return delta.IndexOptions{}, err
	}
	defer b.Close()
	best, _, err := delta.ChooseChunking(ctx, img, n, b, bn, nil)
	if err != nil {
		return delta.IndexOptions{}, fmt.Errorf("choosing the chunking: %w", err)
	}
	o := best.Options
	fmt.Fprintf(stdout, "chunking %s, %d/%d/%d bytes: an adaptive delta from %s is expected to fetch %d bytes\n",
		o.Chunking, o.MinSize, o.AvgSize, o.MaxSize, base, best.Total())
	return o, nil
}

func addPatch(ctx context.Context, r *repository.Repo, target, base, image string) (repository.Target, error) {
	bf, err := os.Open(base)
	if err != nil {
		return repository.Target{}, err
	}
	defer bf.Close()
	fi, err := bf.Stat()
	if err != nil {
		return repository.Target{}, err
	}
	img, err := os.Open(image)
	if err != nil {
		return repository.Target{}, err
	}
	defer img.Close()
	t, err := r.AddPatch(ctx, target, bf, fi.Size(), img)
	if err != nil {
		return repository.Target{}, fmt.Errorf("patch from %s: %w", base, err)
	}
	return t, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// cmdPruneChunks deletes chunk store files that no live chunk index names.
func cmdPruneChunks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("prune-chunks", "", stderr)
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "prune-chunks", err)
	}
	removed, err := r.PruneChunks(ctx)
	for _, p := range removed {
		fmt.Fprintf(stdout, "removed %s\n", p)
	}
	if err != nil {
		return fail(stderr, "prune-chunks", err)
	}
	fmt.Fprintf(stdout, "%d chunks removed\n", len(removed))
	return exitOK
}
