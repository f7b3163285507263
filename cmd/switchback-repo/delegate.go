package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/switchback-ota/switchback/repository"
)

// cmdDelegate makes a targets role delegate paths to a role of its own,
// with its own keys and threshold: per hardware family or per vendor.
func cmdDelegate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("delegate", "ROLE", stderr)
	parent := fs.String("parent", repository.RoleTargets, "role that delegates: targets or a delegated role")
	var paths, prefixes, keyFiles list
	fs.Var(&paths, "paths", "glob patterns of the target paths the role may sign (\"*\" does not cross \"/\"), e.g. rootfs/board-a/*")
	fs.Var(&prefixes, "path-hash-prefixes", "hex prefixes of the SHA-256 of the paths the role may sign (instead of -paths)")
	terminating := fs.Bool("terminating", false, "devices look no further for a path this role is trusted for")
	count := fs.Int("count", 1, "number of keys to generate for the role")
	threshold := fs.Int("threshold", 1, "signatures the role needs")
	fs.Var(&keyFiles, "key", "existing private key `file`s to use for the role (no key is generated then unless -count is given too)")
	keyType := fs.String("key-type", string(repository.Ed25519), "key type: ed25519 or ecdsa-p256")
	out := fs.String("out", "", "`dir`ectory for the new private keys (default: the first -keys directory)")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, exactly(1)); code >= 0 {
		return code
	}
	name := fs.Arg(0)
	if *out == "" {
		*out = g.keyDirs()[0]
	}
	countSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "count" {
			countSet = true
		}
	})
	if len(keyFiles) > 0 && !countSet {
		*count = 0
	}
	if *count < 0 || *threshold < 1 || *threshold > *count+len(keyFiles) {
		return fail(stderr, "delegate", fmt.Errorf("%w: need 1 <= -threshold <= number of keys", errUsage))
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "delegate", err)
	}
	keys, err := delegationKeys(name, keyFiles, *count, repository.KeyType(*keyType), *out, stdout)
	if err != nil {
		return fail(stderr, "delegate", err)
	}
	r.AddKeys(keys...)
	d := repository.Delegation{Name: name, Paths: paths, PathHashPrefixes: prefixes, Terminating: *terminating, Threshold: *threshold}
	for _, k := range keys {
		d.Keys = append(d.Keys, k.Public())
	}
	if err := r.Delegate(*parent, d); err != nil {
		return fail(stderr, "delegate", fmt.Errorf("%w: %w", errUsage, err))
	}
	fmt.Fprintf(stdout, "%s delegates %q to %s (%d of %d keys)\n", *parent, append(paths, prefixes...), name, *threshold, len(keys))
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "delegate", stdout, stderr)
}

// delegationKeys loads the key files and generates count new keys, written
// to dir.
func delegationKeys(role string, files []string, count int, kt repository.KeyType, dir string, stdout io.Writer) ([]*repository.Key, error) {
	keys, err := loadKeyFiles(files)
	if err != nil {
		return nil, err
	}
	for range count {
		k, err := repository.GenerateKey(kt)
		if err != nil {
			return nil, err
		}
		kf := filepath.Join(dir, repository.KeyFileName(role, k))
		if err := k.WriteFile(kf); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "new %s key %s in %s\n", role, k.ID(), kf)
		keys = append(keys, k)
	}
	return keys, nil
}
