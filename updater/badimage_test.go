package updater

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// TestBadImageBlocklisted: a signed, verified archive that the directory
// slot refuses to unpack (a path escaping the tree) is the release's fault:
// it is blocklisted at once, nothing is armed, and the next check does not
// offer it again. Before slots.ErrBadImage it stayed pending and was
// downloaded and refused again at every cycle.
func TestBadImageBlocklisted(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("escape")
	if err := tw.WriteHeader(&tar.Header{Name: "../outside", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	repo := tuftest.New(t)
	repo.AddTarget("config/1.1.0/config.tar", buf.Bytes(), verify.Custom{Component: "config", Version: "1.1.0", Hardware: []string{hw}})
	repo.Publish()
	current := filepath.Join(t.TempDir(), "config")
	if err := os.Mkdir(current, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := slots.NewDir(current)
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(Config{Hardware: hw, StateDir: t.TempDir(), TrustedRoot: repo.Root(),
		MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(),
		Components: []Component{{Name: "config", Slots: dir.Slots(), Boot: dir, FactoryVersion: "1.0.0"}},
		Restart:    func(context.Context, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ups, err := u.Check(ctx)
	if err != nil || len(ups) != 1 {
		t.Fatalf("Check = %v, %v", ups, err)
	}
	if err := u.Install(ctx, ups[0]); !errors.Is(err, slots.ErrBadImage) || !errors.Is(err, slots.ErrUnsafeArchive) {
		t.Fatalf("Install = %v, want ErrUnsafeArchive (ErrBadImage)", err)
	}
	if st, _ := dir.Status(ctx); st.Trial != "" {
		t.Fatalf("slot %s armed", st.Trial)
	}
	if _, err := u.Check(ctx); !errors.Is(err, ErrNoUpdate) || !errors.Is(err, verify.ErrBlocked) {
		t.Fatalf("second Check = %v, want ErrNoUpdate with the release blocked", err)
	}
	st, err := u.Status(ctx)
	if err != nil || len(st.Blocklist) != 1 || st.Components[0].Pending != nil {
		t.Fatalf("Status = %+v, %v; want one blocklisted release and nothing pending", st, err)
	}
}
