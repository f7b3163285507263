package updater

// StateSlot is what a state file records about one slot, as
// [CheckStateFile] reports it.
type StateSlot struct {
	Component, Slot, Version string
	// Image is the sha256 (hex) of the image the slot holds, or of the
	// target written into it when Image was not recorded; Length its size.
	Image    string
	Length   int64
	Complete bool
}

// StateSummary is what crash-consistency checks need from a state file:
// the committed version and pending phase per component, and the slots.
type StateSummary struct {
	Installed map[string]string // component -> committed version
	Pending   map[string]string // component -> "phase slot version", for pending installs
	Slots     []StateSlot
}

// CheckStateFile decodes a state file exactly as the updater does when it
// starts, and summarises it. It is the hook the QEMU example's crash
// replay uses to check every state a power cut may leave on disk.
func CheckStateFile(b []byte) (StateSummary, error) {
	p, err := decodeState(b)
	if err != nil {
		return StateSummary{}, err
	}
	s := StateSummary{Installed: map[string]string{}, Pending: map[string]string{}}
	for name, c := range p.Components {
		s.Installed[name] = c.Installed
		if pd := c.Pending; pd != nil {
			s.Pending[name] = string(pd.Phase) + " " + pd.Slot + " " + pd.Version
		}
		for slot, sc := range c.Slots {
			img := sc.Image
			if img == "" {
				img = sc.TargetSHA256
			}
			s.Slots = append(s.Slots, StateSlot{Component: name, Slot: slot, Version: sc.Version, Image: img, Length: sc.Length, Complete: sc.Complete})
		}
	}
	return s, nil
}
