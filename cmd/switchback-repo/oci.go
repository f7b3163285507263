package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/verify"
)

// platformMap is the repeated -platform flag: "linux/arm64/v8=pi4,pi5".
type platformMap map[string][]string

func (m platformMap) String() string { return fmt.Sprint(map[string][]string(m)) }
func (m platformMap) Set(v string) error {
	p, hw, ok := strings.Cut(v, "=")
	if !ok || p == "" || hw == "" {
		return fmt.Errorf("want PLATFORM=HARDWARE[,HARDWARE...], got %q", v)
	}
	m[p] = append(m[p], strings.Split(hw, ",")...)
	return nil
}

// cmdAddOCI records a container image (its manifest or index, fetched
// from the registry by tag or digest) as a target.
func cmdAddOCI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("add-oci", "REPOSITORY:TAG|REPOSITORY@DIGEST", stderr)
	c := verify.Custom{OCI: &verify.OCI{}}
	var hw list
	platforms := platformMap{}
	fs.StringVar(&c.Component, "component", "", "component the image updates (required)")
	fs.StringVar(&c.Version, "version", "", "semantic version of the release (required)")
	fs.Var(&hw, "hardware", "hardware ids of a single-platform image (default for an index: those of -platform)")
	fs.Var(platforms, "platform", "`PLATFORM=HW[,HW]`: index platform (linux/arm64/v8) and the hardware running it; repeated")
	fs.StringVar(&c.MinVersion, "min-version", "", "lowest installed version the release may update")
	registry := fs.String("registry", "", "registry `host[:port]` to read the manifest from (required)")
	insecure := fs.Bool("insecure", false, "plain HTTP to the registry")
	tpath := fs.String("path", "", "target path (default COMPONENT/VERSION/manifest.json)")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, exactly(1)); code >= 0 {
		return code
	}
	repo, ref, err := splitImage(fs.Arg(0))
	if err != nil || *registry == "" {
		return fail(stderr, "add-oci", fmt.Errorf("%w: want -registry HOST and REPOSITORY:TAG or REPOSITORY@DIGEST (%v)", errUsage, err))
	}
	c.Hardware, c.OCI.Repository = hw, repo
	if len(platforms) > 0 {
		c.OCI.Platforms = platforms
	}
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: *registry, Repository: repo, Insecure: *insecure})
	if err != nil {
		return fail(stderr, "add-oci", err)
	}
	manifest, digest, err := reg.Manifest(ctx, ref)
	if err != nil {
		return fail(stderr, "add-oci", err)
	}
	p := *tpath
	if p == "" {
		p = path.Join(c.Component, c.Version, "manifest.json")
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "add-oci", err)
	}
	t, err := r.AddOCI(ctx, p, manifest, c)
	if err != nil {
		return fail(stderr, "add-oci", err)
	}
	fmt.Fprintf(stdout, "added %s: %s/%s@%s (%d bytes)\n", t.Path, *registry, repo, digest, t.Length)
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "add-oci", stdout, stderr)
}

// splitImage splits "repo:tag" or "repo@sha256:..." into repository and reference.
func splitImage(s string) (repo, ref string, err error) {
	if r, d, ok := strings.Cut(s, "@"); ok {
		return r, d, nil
	}
	if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s[i:], "/") {
		return s[:i], s[i+1:], nil
	}
	return "", "", fmt.Errorf("image %q has no tag or digest", s)
}
