package systemd_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// unit is a parsed unit file: section → key → values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q: want Key=value inside a section", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// has reports whether section.key lists word among its space-separated
// values.
func (u unit) has(section, key, word string) bool {
	for _, v := range u[section][key] {
		for _, w := range strings.Fields(v) {
			if w == word {
				return true
			}
		}
	}
	return false
}

func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// TestUnitContracts holds each unit to what README.md promises of it.
func TestUnitContracts(t *testing.T) {
	type want struct{ section, key, word string }
	tests := []struct {
		file string
		want []want
	}{
		{"switchback-boot-assessment.service", []want{
			{"Unit", "Before", "boot-complete.target"},
			{"Install", "RequiredBy", "boot-complete.target"},
			{"Service", "Type", "oneshot"},
			{"Service", "RemainAfterExit", "yes"},
			{"Service", "ExecStart", "confirm"},
			{"Service", "FailureAction", "reboot"},
			{"Unit", "After", "network-online.target"},
		}},
		{"switchback-agent.service", []want{
			{"Service", "Type", "notify"},
			{"Service", "Restart", "on-failure"},
			{"Unit", "After", "switchback-boot-assessment.service"},
		}},
		{"gateway-guarded.service", []want{
			{"Service", "ExecStartPre", "guard"},
			{"Service", "ExecStartPre", "--component"},
			{"Service", "Restart", "on-failure"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			u := parseUnit(t, tt.file)
			for _, w := range tt.want {
				if !u.has(w.section, w.key, w.word) {
					t.Errorf("[%s] %s=%q: want it to include %q", w.section, w.key, u[w.section][w.key], w.word)
				}
			}
		})
	}
	if u := parseUnit(t, "switchback-agent.service"); u.get("Service", "WatchdogSec") == "" {
		t.Error("agent: no WatchdogSec=: a stalled agent would never be restarted")
	}
	// The guard must see more starts than its budget before systemd gives up.
	u := parseUnit(t, "gateway-guarded.service")
	burst, err := strconv.Atoi(u.get("Unit", "StartLimitBurst"))
	if err != nil || burst < 10 {
		t.Errorf("guarded app: StartLimitBurst=%q: want a number of at least 10", u.get("Unit", "StartLimitBurst"))
	}
	if u.get("Unit", "StartLimitIntervalSec") == "" {
		t.Error("guarded app: no StartLimitIntervalSec=")
	}
}

// TestUnitsVerify runs systemd-analyze verify over the units, with the
// programs they start replaced by one that exists, and fails on any
// complaint (unknown keys and bad values only warn).
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		ci.Skipf(t, "systemd-analyze not found: %v", err)
	}
	stand, err := exec.LookPath("true")
	if err != nil {
		t.Skipf("no true program: %v", err)
	}
	files, err := filepath.Glob("*.service")
	if err != nil || len(files) != 3 {
		t.Fatalf("unit files: got %v, %v; want 3", files, err)
	}
	dir := t.TempDir()
	repl := strings.NewReplacer(
		"/usr/bin/switchback ", stand+" ",
		"/usr/local/bin/switchback-agent", stand,
		"/opt/gateway/bin/gateway", stand,
	)
	var paths []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte(repl.Replace(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
