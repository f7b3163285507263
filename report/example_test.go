package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/switchback-ota/switchback/report"
	"github.com/switchback-ota/switchback/updater"
)

// A reporter fed by the updater's events; here one event, sent once.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b report.Batch
		json.NewDecoder(r.Body).Decode(&b)
		for _, rec := range b.Records {
			fmt.Println(b.Source, rec.Seq, rec.Type, rec.Component, rec.From, "->", rec.To, rec.Version)
		}
	}))
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "outbox")
	defer os.RemoveAll(dir)

	rep, err := report.New(report.Config{URL: srv.URL, Dir: dir, Source: "gw-0042"})
	if err != nil {
		panic(err)
	}
	// In an application: updater.Config{Events: rep.Observe, ...} and
	// go rep.Run(ctx).
	rep.Observe(updater.StateChanged{Component: "rootfs", From: updater.StateIdle, To: updater.StateDownloading, Version: "1.4.0"})
	if _, err := rep.SendOnce(context.Background()); err != nil {
		panic(err)
	}
	// Output: gw-0042 0 state rootfs idle -> downloading 1.4.0
}
