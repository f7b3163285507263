package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The pair kinds deltabench makes itself, beside the two images of one
// root file system release (ext4, squashfs):
//
//   - exec: cmd/switchback (or -exec-pkg) of this repository built at two
//     commits (-exec-revs), with git archive and go build -trimpath: the most
//     common update an application ships, where moved code shifts the
//     addresses every copy holds.
//   - ext4-adds: the new release's root file system, and the same with
//     the files of more Debian packages (addPackages) extracted into it
//     (apt-get download, dpkg-deb -x; cached): a release that grows.

// addPackages are extracted into the ext4-adds release: an interpreter, a
// network client and its libraries, and tools, none in minbase.
var addPackages = []string{
	"python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3-minimal",
	"curl", "libcurl4", "libnghttp2-14", "librtmp1", "libssh2-1", "libpsl5", "libbrotli1",
	"libldap-2.5-0", "libsasl2-2", "libsasl2-modules-db", "openssl", "ca-certificates",
	"iproute2", "libmnl0", "libelf1", "libbpf1", "libcap2-bin", "iputils-ping", "netbase",
	"procps", "libproc2-0", "vim-tiny", "vim-common", "xxd", "file", "libmagic1", "libmagic-mgc",
}

// pairFiles returns the base and new image of a pair kind, building them
// (and what they are made from) when they are not there yet.
func pairFiles(kind, cache, work string, ex execPair) (base, cur string, err error) {
	base, cur = filepath.Join(work, "base."+kind), filepath.Join(work, "new."+kind)
	switch kind {
	case "ext4", "squashfs":
		if err := buildRootfs(cache); err != nil {
			return "", "", err
		}
		err = buildImages(kind, filepath.Join(cache, "rootfs-base"), filepath.Join(cache, "rootfs-new"), base, cur)
	case "ext4-adds":
		if err := buildRootfs(cache); err != nil {
			return "", "", err
		}
		adds, err := buildRootfsAdds(cache)
		if err != nil {
			return "", "", err
		}
		if err := buildImages("ext4", filepath.Join(cache, "rootfs-new"), adds, base, cur); err != nil {
			return "", "", err // was shadowed: a failed build went unnoticed
		}
	case "exec":
		revs := strings.Split(ex.revs, ",")
		if len(revs) != 2 {
			return "", "", fmt.Errorf("-exec-revs %q: want two commits, base,new", ex.revs)
		}
		for i, out := range []string{base, cur} {
			if err := buildExec(cache, ex.pkg, revs[i], out); err != nil {
				return "", "", err
			}
		}
	default:
		return "", "", fmt.Errorf("unknown pair %q (ext4, squashfs, ext4-adds, exec)", kind)
	}
	return base, cur, err
}

func buildImages(kind, baseDir, newDir, base, cur string) error {
	if err := buildImage(kind, baseDir, base); err != nil {
		return err
	}
	return buildImage(kind, newDir, cur)
}

// buildRootfsAdds makes cache/rootfs-adds: rootfs-new with the files of
// addPackages, whose .debs are downloaded once into cache/debs.
func buildRootfsAdds(cache string) (string, error) {
	dir := filepath.Join(cache, "rootfs-adds")
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	for _, t := range []string{"apt-get", "dpkg-deb"} {
		if !have(t) {
			return "", fmt.Errorf("%s is missing: the ext4-adds pair needs a Debian host", t)
		}
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	fmt.Printf("downloading %d packages for the ext4-adds pair...\n", len(addPackages))
	for _, p := range addPackages {
		if m, _ := filepath.Glob(filepath.Join(debs, p+"_*.deb")); len(m) > 0 {
			continue
		}
		cmd := exec.Command("apt-get", "download", "-q", p)
		cmd.Dir, cmd.Stdout, cmd.Stderr = debs, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get download %s: %w", p, err)
		}
	}
	err := sh(fmt.Sprintf(`R=%[1]s.tmp
rm -rf $R
cp -a %[2]s $R
for d in %[3]s/*.deb; do dpkg-deb -x "$d" $R; done
echo "switchback release 3" > $R/etc/motd
mv $R %[1]s`, dir, filepath.Join(cache, "rootfs-new"), debs))
	if err != nil {
		return "", fmt.Errorf("making the ext4-adds release: %w", err)
	}
	return dir, nil
}

// execPair is what the exec pair builds: the program pkg of this
// repository (a package path relative to its root) at two commits, revs
// ("base,new").
type execPair struct{ pkg, revs string }

// buildExec builds the program pkg of this repository at commit rev into
// out, from a git archive of that commit (cached in cache/exec).
func buildExec(cache, pkg, rev, out string) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	if !have("git") || !have("go") {
		return errors.New("the exec pair needs git and go")
	}
	src := filepath.Join(cache, "exec", "src-"+rev)
	if _, err := os.Stat(src); err != nil {
		top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			return fmt.Errorf("the exec pair is built from this repository: run deltabench inside it (%w)", err)
		}
		err = sh(fmt.Sprintf(`rm -rf %[1]s.tmp && mkdir -p %[1]s.tmp
git -C %[2]s archive %[3]s | tar -x -C %[1]s.tmp
mv %[1]s.tmp %[1]s`, src, strings.TrimSpace(string(top)), rev))
		if err != nil {
			return fmt.Errorf("git archive %s: %w", rev, err)
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out+".tmp", pkg)
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s at %s: %w", pkg, rev, err)
	}
	return os.Rename(out+".tmp", out)
}
