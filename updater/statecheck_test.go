package updater

import "testing"

// TestCheckStateFile: the hook decodes as the updater does and summarises
// installed versions, pending installs and slots.
func TestCheckStateFile(t *testing.T) {
	tests := []struct {
		name, in  string
		ok        bool
		installed string
		pending   string
		slots     int
	}{
		{"committed", `{"version":1,"components":{"rootfs":{"installed":"2.0.0","slots":{"b":{"target":"ab","version":"2.0.0","length":4,"complete":true}}}}}`, true, "2.0.0", "", 1},
		{"armed", `{"version":1,"components":{"rootfs":{"installed":"1.0.0","pending":{"phase":"armed","slot":"b","target":"ab","version":"2.0.0","length":4,"offset":4}}}}`, true, "1.0.0", "armed b 2.0.0", 0},
		{"torn", `{"version":1,"compo`, false, "", "", 0},
		{"newer schema", `{"version":2,"components":{}}`, false, "", "", 0},
		{"unknown phase", `{"version":1,"components":{"rootfs":{"pending":{"phase":"x","slot":"b","target":"ab"}}}}`, false, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := CheckStateFile([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if s.Installed["rootfs"] != tt.installed || s.Pending["rootfs"] != tt.pending || len(s.Slots) != tt.slots {
				t.Errorf("summary %+v", s)
			}
		})
	}
}
