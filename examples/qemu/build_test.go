package main

import (
	"bytes"
	"testing"
)

// TestReleaseFiles: what a release's flavor, hardware id, extra files and
// root put in its image.
func TestReleaseFiles(t *testing.T) {
	root := []byte(`{"signed":{}}`)
	tests := []struct {
		name      string
		r         release
		want      map[string]string // path: content; "*" any
		absent    []string
		initPanic bool
	}{
		{"good", release{Version: "1.2.0", Flavor: flavorGood, AgentArgs: "-interval 7s"}, map[string]string{
			"etc/switchback/version": "1.2.0\n", "etc/switchback/hardware": hardwareID + "\n",
			"srv/www/healthz": "ok 1.2.0\n", "etc/switchback/app": "*", "etc/hostname": "switchback-qemu\n",
		}, []string{"etc/switchback/root.json"}, false},
		{"no health", release{Version: "1.3.0", Flavor: flavorNoHealth}, map[string]string{
			"etc/switchback/version": "1.3.0\n",
		}, []string{"etc/switchback/app"}, false},
		{"panic", release{Version: "1.4.0", Flavor: flavorPanic}, map[string]string{"etc/switchback/app": "*"}, nil, true},
		{"arm64 with root", release{Version: "2.0.0", Flavor: flavorGood, Hardware: hardwareARM64, RootJSON: root,
			Files: map[string][]byte{"etc/fw_env.config": []byte(fwEnvConfigARM64)}}, map[string]string{
			"etc/switchback/hardware": hardwareARM64 + "\n", "etc/switchback/root.json": string(root),
			"etc/fw_env.config": fwEnvConfigARM64,
		}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := releaseFiles(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			for _, f := range list {
				got[f.path] = f.data
			}
			for p, want := range tt.want {
				if b, ok := got[p]; !ok || want != "*" && string(b) != want {
					t.Errorf("%s = %q (present %v), want %q", p, b, ok, want)
				}
			}
			for _, p := range tt.absent {
				if _, ok := got[p]; ok {
					t.Errorf("%s present, want it absent", p)
				}
			}
			init := got["sbin/init"]
			if isScript := bytes.HasPrefix(init, []byte("#!")); isScript == tt.initPanic {
				t.Errorf("sbin/init starts %q: a script %v, want %v", init[:min(len(init), 20)], isScript, !tt.initPanic)
			}
			if !tt.initPanic && !bytes.Contains(init, []byte(tt.r.AgentArgs)) {
				t.Errorf("sbin/init lacks the agent arguments %q", tt.r.AgentArgs)
			}
		})
	}
}
