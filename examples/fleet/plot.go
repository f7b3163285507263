package main

import (
	"fmt"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// drawPNG draws the download curve (concurrent downloads, % of the fleet)
// above the adoption curve (% of the fleet on the new release), one line
// per scenario, against virtual hours.
func drawPNG(path string, rs []*result) error {
	dl := plot.New()
	dl.Title.Text = "Concurrent downloads (peak per 10 min of virtual time)"
	dl.X.Label.Text = "virtual hours"
	dl.Y.Label.Text = "% of the fleet downloading"
	ad := plot.New()
	ad.Title.Text = "Devices on the new release"
	ad.X.Label.Text = "virtual hours"
	ad.Y.Label.Text = "% of the fleet"
	for i, r := range rs {
		conc := make(plotter.XYs, len(r.curve))
		for j, n := range r.curve {
			conc[j] = plotter.XY{X: (time.Duration(j) * curveBin).Hours(), Y: 100 * float64(n) / float64(r.devices)}
		}
		adopt := make(plotter.XYs, len(r.adoption)+1)
		for h, a := range r.adoption {
			adopt[h+1] = plotter.XY{X: float64(h + 1), Y: a}
		}
		label := fmt.Sprintf("%s (peak %.2f%%)", legend(r), r.peakShare())
		if err := addLine(dl, conc, label, i); err != nil {
			return err
		}
		if err := addLine(ad, adopt, legend(r), i); err != nil {
			return err
		}
	}
	dl.Legend.Top = true
	ad.Legend.Left, ad.Legend.Top = false, false
	img := vgimg.New(8*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Centimeter, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3,
		PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align([][]*plot.Plot{{dl}, {ad}}, tiles, dc)
	dl.Draw(canvases[0][0])
	ad.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func legend(r *result) string {
	if r.ramp {
		return fmt.Sprintf("%s: staged rollout %s, %d devices", r.name, r.rampSpec, r.devices)
	}
	return fmt.Sprintf("%s: everyone at once, %d devices", r.name, r.devices)
}

func addLine(p *plot.Plot, xys plotter.XYs, label string, i int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}
