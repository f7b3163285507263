package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

type global struct {
	repo string
	keys list
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

func newFlags(name, args string, stderr io.Writer) (*flag.FlagSet, *global) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g := &global{}
	fs.StringVar(&g.repo, "repo", "repo", "repository `dir`ectory")
	fs.Var(&g.keys, "keys", "`dir`ectories of the private keys available on this machine, comma-separated or repeated (default \"keys\")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: switchback-repo %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs, g
}

// parseFlags returns (-1) to go on, or the exit code.
func parseFlags(fs *flag.FlagSet, args []string, nargs func(int) bool) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if nargs != nil && !nargs(fs.NArg()) {
		fmt.Fprintf(fs.Output(), "switchback-repo %s: wrong number of arguments\n", fs.Name())
		fs.Usage()
		return exitUsage
	}
	return -1
}

func exactly(n int) func(int) bool { return func(k int) bool { return k == n } }
func atLeast(n int) func(int) bool { return func(k int) bool { return k >= n } }

// fail prints err and picks the exit code.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "switchback-repo %s: %v\n", cmd, err)
	switch {
	case errors.Is(err, repository.ErrThreshold):
		fmt.Fprintf(stderr, "switchback-repo %s: changes are staged; collect the missing signatures with\n"+
			"  switchback-repo sign export -role ROLE -o ROLE.json   (here)\n"+
			"  switchback-repo sign sign -key KEY.pem ROLE.json      (where the key is)\n"+
			"  switchback-repo sign merge ROLE.json                  (here)\n", cmd)
		return exitPending
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitFail
}

// keyDirs returns the -keys directories; the first receives new keys.
func (g *global) keyDirs() []string {
	if len(g.keys) == 0 {
		return []string{"keys"}
	}
	return g.keys
}

func (g *global) open() (*repository.Repo, error) {
	var keys []*repository.Key
	for _, d := range g.keyDirs() {
		ks, err := repository.LoadKeys(d)
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
	}
	return repository.Open(repository.Config{Dir: g.repo, Keys: keys})
}

// roleValues is a repeatable "role=value" flag.
type roleValues map[string]string

func (m roleValues) String() string {
	var s []string
	for k, v := range m {
		s = append(s, k+"="+v)
	}
	return strings.Join(s, ",")
}

func (m roleValues) Set(v string) error {
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return fmt.Errorf("want role=value, got %q", kv)
		}
		m[k] = val
	}
	return nil
}

// list is a repeatable, comma-separated flag.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func cmdInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("init", "", stderr)
	keyType := fs.String("key-type", string(repository.Ed25519), "key type: ed25519 or ecdsa-p256")
	thresholds, nkeys, expiry := roleValues{}, roleValues{}, roleValues{}
	fs.Var(thresholds, "threshold", "signatures a role needs, `role=n` (repeatable; default 1)")
	fs.Var(nkeys, "nkeys", "keys to generate for a role, `role=n` (default: its threshold)")
	fs.Var(expiry, "expiry", "expiry period of a role, `role=duration` (defaults: root=8760h targets=2160h snapshot=168h timestamp=24h)")
	rootKeys := fs.String("root-keys", "", "write the root keys to this `dir`ectory (removable medium) instead of -keys")
	if c := parseFlags(fs, args, exactly(0)); c >= 0 {
		return c
	}
	opts := repository.InitOptions{KeyType: repository.KeyType(*keyType), KeysDir: g.keyDirs()[0], RootKeysDir: *rootKeys, Roles: map[string]repository.RoleOptions{}}
	for _, m := range []roleValues{thresholds, nkeys, expiry} {
		for role := range m {
			if !validRole(role) {
				return fail(stderr, "init", fmt.Errorf("%w: unknown role %q", errUsage, role))
			}
		}
	}
	for _, role := range repository.Roles {
		var o repository.RoleOptions
		var err error
		if v, ok := thresholds[role]; ok {
			if o.Threshold, err = strconv.Atoi(v); err != nil || o.Threshold < 1 {
				return fail(stderr, "init", fmt.Errorf("%w: -threshold %s=%s: want a positive number", errUsage, role, v))
			}
		}
		if v, ok := nkeys[role]; ok {
			if o.Keys, err = strconv.Atoi(v); err != nil || o.Keys < 1 {
				return fail(stderr, "init", fmt.Errorf("%w: -nkeys %s=%s: want a positive number", errUsage, role, v))
			}
		}
		if v, ok := expiry[role]; ok {
			if o.Expiry, err = time.ParseDuration(v); err != nil || o.Expiry <= 0 {
				return fail(stderr, "init", fmt.Errorf("%w: -expiry %s=%s: want a positive duration such as 24h", errUsage, role, v))
			}
		}
		opts.Roles[role] = o
	}
	r, err := repository.Init(ctx, repository.Config{Dir: g.repo}, opts)
	if err != nil {
		return fail(stderr, "init", err)
	}
	fmt.Fprintf(stdout, "initialised %s; keys in %s\n", r.Dir(), opts.KeysDir)
	fmt.Fprintf(stdout, "serve %s and %s; devices embed %s\n", r.MetadataDir(), r.TargetsDir(), filepath.Join(r.MetadataDir(), "1.root.json"))
	if *rootKeys != "" {
		fmt.Fprintf(stdout, "root keys in %s: keep them offline; add them with -keys %s,%s to rotate keys\n", *rootKeys, opts.KeysDir, *rootKeys)
	} else {
		fmt.Fprintf(stdout, "move the root-*.pem keys offline; they are needed only to rotate keys and renew the root\n")
	}
	return exitOK
}

func validRole(role string) bool {
	for _, r := range repository.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func cmdAdd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("add", "FILE", stderr)
	var c verify.Custom
	var hw list
	fs.StringVar(&c.Component, "component", "", "component the release updates (required)")
	fs.StringVar(&c.Version, "version", "", "semantic version of the release (required)")
	fs.Var(&hw, "hardware", "compatible hardware ids, comma-separated or repeated; \"*\" for any (required)")
	fs.StringVar(&c.MinVersion, "min-version", "", "lowest installed version the release may update")
	tpath := fs.String("path", "", "target path (default COMPONENT/VERSION/FILENAME, plus .zst with -zstd)")
	zst := fs.Bool("zstd", false, "compress the release into independent zstd frames")
	frame := fs.Int("frame-size", repository.DefaultFrameSize, "uncompressed `bytes` per zstd frame")
	role := fs.String("role", repository.RoleTargets, "targets role that lists the release: targets or a delegated role (see delegate)")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, exactly(1)); code >= 0 {
		return code
	}
	c.Hardware = hw
	if err := c.Validate(); err != nil {
		return fail(stderr, "add", fmt.Errorf("%w: %w", errUsage, err))
	}
	file := fs.Arg(0)
	p := *tpath
	if p == "" {
		p = path.Join(c.Component, c.Version, filepath.Base(file))
		if *zst {
			p += ".zst"
		}
	}
	if *frame <= 0 {
		return fail(stderr, "add", fmt.Errorf("%w: -frame-size must be positive", errUsage))
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "add", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return fail(stderr, "add", err)
	}
	defer f.Close()
	t, err := r.AddTarget(ctx, p, f, c, repository.AddOptions{Zstd: *zst, FrameSize: *frame, Role: *role})
	if err != nil {
		return fail(stderr, "add", err)
	}
	fmt.Fprintf(stdout, "added %s (%d bytes, sha256 %s)\n", t.Path, t.Length, t.SHA256)
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "add", stdout, stderr)
}

func publish(ctx context.Context, r *repository.Repo, cmd string, stdout, stderr io.Writer) int {
	if err := r.Publish(ctx); err != nil {
		return fail(stderr, cmd, err)
	}
	for _, s := range r.Status() {
		fmt.Fprintf(stdout, "%-9s v%d expires %s\n", s.Role, s.Version, s.Expires.Format(time.RFC3339))
	}
	return exitOK
}

func cmdRemove(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("remove", "TARGET-PATH...", stderr)
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, atLeast(1)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "remove", err)
	}
	for _, p := range fs.Args() {
		if err := r.RemoveTarget(p); err != nil {
			return fail(stderr, "remove", err)
		}
		fmt.Fprintf(stdout, "removed %s\n", p)
	}
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "remove", stdout, stderr)
}

func cmdList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("list", "", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "list", err)
	}
	ts := r.Targets()
	if *asJSON {
		type entry struct {
			Path   string          `json:"path"`
			Length int64           `json:"length"`
			SHA256 string          `json:"sha256"`
			File   string          `json:"file"`
			Custom json.RawMessage `json:"custom,omitempty"`
		}
		out := []entry{}
		for _, t := range ts {
			out = append(out, entry{t.Path, t.Length, t.SHA256, t.File, t.Custom})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(stderr, "list", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tCOMPONENT\tVERSION\tHARDWARE\tMIN\tLENGTH\tSHA256")
	for _, t := range ts {
		c, err := verify.ParseCustom(t.Custom)
		if err != nil {
			fmt.Fprintf(tw, "%s\t(invalid custom metadata: %v)\t\t\t\t%d\t%.16s\n", t.Path, err, t.Length, t.SHA256)
			continue
		}
		comp := c.Component
		if c.Compression != "" {
			comp += " (" + c.Compression + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.16s\n", t.Path, comp, c.Version, strings.Join(c.Hardware, ","), c.MinVersion, t.Length, t.SHA256)
	}
	if err := tw.Flush(); err != nil {
		return fail(stderr, "list", err)
	}
	return exitOK
}

func short(ids []string) string {
	var s []string
	for _, id := range ids {
		s = append(s, id[:min(len(id), 16)])
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("status", "", stderr)
	warn := fs.Duration("warn", 0, "exit 1 if a published role expires within this `duration` (for monitoring)")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "status", err)
	}
	now := time.Now()
	code := exitOK
	for _, s := range r.Status() {
		if *warn > 0 && s.Expires.Sub(now) < *warn {
			fmt.Fprintf(stderr, "switchback-repo status: %s v%d expires %s, within %v\n", s.Role, s.Version, s.Expires.Format(time.RFC3339), *warn)
			code = exitFail
		}
		left := s.Expires.Sub(now).Round(time.Minute)
		state := "expires in " + left.String()
		if left <= 0 {
			state = "EXPIRED"
		}
		fmt.Fprintf(stdout, "%s: version %d, expires %s (%s)\n", s.Role, s.Version, s.Expires.Format(time.RFC3339), state)
		fmt.Fprintf(stdout, "  threshold %d of keys %s\n", s.Threshold, short(s.KeyIDs))
		fmt.Fprintf(stdout, "  signed by %s\n", short(s.SignedBy))
		fmt.Fprintf(stdout, "  keys here %s\n", short(s.Available))
		if s.Staged {
			fmt.Fprintf(stdout, "  STAGED version %d, expires %s, signed by %s\n", s.StagedVersion, s.StagedExpires.Format(time.RFC3339), short(s.StagedSignedBy))
		}
	}
	return code
}

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("publish", "", stderr)
	var s3 s3Flags
	s3.register(fs)
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "publish", err)
	}
	if code := publish(ctx, r, "publish", stdout, stderr); code != exitOK || s3.to == "" {
		return code
	}
	return s3.upload(ctx, r, stdout, stderr)
}

func cmdRefresh(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("refresh", "", stderr)
	var roles list
	fs.Var(&roles, "role", "also renew these roles (targets, root), comma-separated")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "refresh", err)
	}
	for _, role := range roles {
		if err := r.Bump(role); err != nil {
			return fail(stderr, "refresh", fmt.Errorf("%w: %w", errUsage, err))
		}
	}
	if err := r.Refresh(ctx); err != nil {
		return fail(stderr, "refresh", err)
	}
	return publish(ctx, r, "refresh", stdout, stderr)
}

func cmdPrune(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("prune", "", stderr)
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "prune", err)
	}
	removed, err := r.Prune(ctx)
	for _, p := range removed {
		fmt.Fprintf(stdout, "removed %s\n", p)
	}
	if err != nil {
		return fail(stderr, "prune", err)
	}
	fmt.Fprintf(stdout, "%d files removed\n", len(removed))
	return exitOK
}

func cmdRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("rotate", "", stderr)
	role := fs.String("role", "", "role whose keys are replaced (required)")
	count := fs.Int("count", 1, "number of new keys")
	threshold := fs.Int("threshold", 0, "new threshold (default: the old one, at most -count)")
	keyType := fs.String("key-type", string(repository.Ed25519), "key type: ed25519 or ecdsa-p256")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	out := fs.String("out", "", "`dir`ectory for the new private keys (default: the first -keys directory)")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	if *out == "" {
		*out = g.keyDirs()[0]
	}
	if !validRole(*role) {
		return fail(stderr, "rotate", fmt.Errorf("%w: -role must be root, targets, snapshot or timestamp", errUsage))
	}
	if *count < 1 || *threshold < 0 || *threshold > *count {
		return fail(stderr, "rotate", fmt.Errorf("%w: need 1 <= -threshold <= -count", errUsage))
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "rotate", err)
	}
	var keys []*repository.Key
	for range *count {
		k, err := repository.GenerateKey(repository.KeyType(*keyType))
		if err != nil {
			return fail(stderr, "rotate", err)
		}
		kf := filepath.Join(*out, repository.KeyFileName(*role, k))
		if err := k.WriteFile(kf); err != nil {
			return fail(stderr, "rotate", err)
		}
		fmt.Fprintf(stdout, "new %s key %s in %s\n", *role, k.ID(), kf)
		keys = append(keys, k)
	}
	if err := r.RotateKeys(*role, keys, *threshold); err != nil {
		return fail(stderr, "rotate", err)
	}
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "rotate", stdout, stderr)
}

func cmdSign(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const subUsage = "usage: switchback-repo sign export|sign|merge [flags]\n" +
		"  export -role ROLE [-o FILE]     write the staged metadata of ROLE\n" +
		"  sign -key KEY.pem [-o OUT] FILE add a signature (no repository needed)\n" +
		"  merge FILE...                   merge signatures and publish\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, subUsage)
		return exitUsage
	}
	switch args[0] {
	case "export":
		return cmdSignExport(args[1:], stdout, stderr)
	case "sign":
		return cmdSignSign(args[1:], stdout, stderr)
	case "merge":
		return cmdSignMerge(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "switchback-repo sign: unknown subcommand %q\n%s", args[0], subUsage)
	return exitUsage
}

// cmdSignExport writes the staged metadata of a role for offline signing.
func cmdSignExport(args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("sign export", "", stderr)
	role := fs.String("role", "", "role to export (required)")
	out := fs.String("o", "", "output `file` (default stdout)")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "sign export", err)
	}
	b, err := r.Export(*role)
	if err != nil {
		return fail(stderr, "sign export", err)
	}
	return writeOut(stdout, stderr, "sign export", *out, b)
}

// cmdSignSign adds signatures to an exported file; it needs no repository.
func cmdSignSign(args []string, stdout, stderr io.Writer) int {
	fs, _ := newFlags("sign sign", "FILE", stderr)
	var keyFiles list
	fs.Var(&keyFiles, "key", "private key `file` to sign with (repeatable)")
	out := fs.String("o", "", "output `file` (default: overwrite FILE)")
	if code := parseFlags(fs, args, exactly(1)); code >= 0 {
		return code
	}
	if len(keyFiles) == 0 {
		return fail(stderr, "sign sign", fmt.Errorf("%w: -key is required", errUsage))
	}
	keys, err := loadKeyFiles(keyFiles)
	if err != nil {
		return fail(stderr, "sign sign", err)
	}
	in, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fail(stderr, "sign sign", err)
	}
	b, err := repository.SignExported(in, keys...)
	if err != nil {
		return fail(stderr, "sign sign", err)
	}
	dst := *out
	if dst == "" {
		dst = fs.Arg(0)
	}
	return writeOut(stdout, stderr, "sign sign", dst, b)
}

// cmdSignMerge merges the signatures of signed files into the staged
// metadata and publishes.
func cmdSignMerge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("sign merge", "FILE...", stderr)
	noPublish := fs.Bool("no-publish", false, "merge only")
	if code := parseFlags(fs, args, atLeast(1)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "sign merge", err)
	}
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return fail(stderr, "sign merge", err)
		}
		role, n, err := r.MergeSignatures(b)
		if err != nil {
			return fail(stderr, "sign merge", fmt.Errorf("%s: %w", f, err))
		}
		fmt.Fprintf(stdout, "%s: %d new signature(s) on %s\n", f, n, role)
	}
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "sign merge", stdout, stderr)
}

// loadKeyFiles loads the private keys in files.
func loadKeyFiles(files []string) ([]*repository.Key, error) {
	var keys []*repository.Key
	for _, f := range files {
		k, err := repository.LoadKeyFile(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func writeOut(stdout, stderr io.Writer, cmd, file string, b []byte) int {
	if file == "" {
		if _, err := stdout.Write(b); err != nil {
			return fail(stderr, cmd, err)
		}
		return exitOK
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", file)
	return exitOK
}
