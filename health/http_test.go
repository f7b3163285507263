package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func healthServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok","db":"up"}`)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "db connection refused", http.StatusInternalServerError)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		// Far more than MaxHTTPBody; the marker lies beyond it.
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 2*MaxHTTPBody/len(chunk); i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, "MARKER")
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTP(t *testing.T) {
	srv := healthServer(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		url     string
		opts    []HTTPOption
		wantErr []string // substrings of the error; none means pass
	}{
		{"2xx passes", srv.URL + "/ok", nil, nil},
		{"500 fails with status and body", srv.URL + "/fail", nil, []string{"status 500", "want 200-299", "db connection refused"}},
		{"status range accepts 500", srv.URL + "/fail", []HTTPOption{WithStatus(500, 503)}, nil},
		{"redirect followed", srv.URL + "/redirect", []HTTPOption{WithBodyContains(`"ok"`)}, nil},
		{"redirect not wanted", srv.URL + "/redirect", []HTTPOption{WithHTTPClient(&http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		})}, []string{"status 302"}},
		{"404", srv.URL + "/nope", nil, []string{"status 404"}},
		{"body contains", srv.URL + "/ok", []HTTPOption{WithBodyContains(`"db":"up"`), WithBodyContains("status")}, nil},
		{"body lacks", srv.URL + "/ok", []HTTPOption{WithBodyContains(`"db":"down"`)}, []string{`does not contain "\"db\":\"down\""`, `"db":"up"`}},
		{"body matches", srv.URL + "/ok", []HTTPOption{WithBodyMatch(regexp.MustCompile(`"status":\s*"ok"`))}, nil},
		{"body does not match", srv.URL + "/ok", []HTTPOption{WithBodyMatch(regexp.MustCompile(`degraded`))}, []string{"does not match /degraded/"}},
		{"nil regexp", srv.URL + "/ok", []HTTPOption{WithBodyMatch(nil)}, []string{"nil regexp"}},
		{"header sent", srv.URL + "/auth", []HTTPOption{WithHeader("Authorization", "Bearer s3cret")}, nil},
		{"header missing", srv.URL + "/auth", nil, []string{"status 401"}},
		{"bounded body read", srv.URL + "/huge", []HTTPOption{WithBodyContains("MARKER")}, []string{"does not contain", "..."}},
		{"bad range", srv.URL + "/ok", []HTTPOption{WithStatus(300, 200)}, []string{"invalid status range 300-200"}},
		{"bad URL", "http://[::1", nil, []string{"bad URL"}},
		{"refused", closedURL, nil, []string{"GET " + closedURL}},
		{"timeout", srv.URL + "/hang", []HTTPOption{Timeout(50 * time.Millisecond)}, []string{"timed out"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := HTTP(tt.url, tt.opts...).Check(guard(t))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got %v, want pass", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got pass, want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestHTTPNameAndTimeoutError(t *testing.T) {
	srv := healthServer(t)
	c := HTTP(srv.URL+"/hang", Timeout(20*time.Millisecond))
	if got, want := c.Name(), "http:"+srv.URL+"/hang"; got != want {
		t.Errorf("name: got %q, want %q", got, want)
	}
	if err := c.Check(guard(t)); !errors.Is(err, ErrTimeout) {
		t.Errorf("got %v, want ErrTimeout", err)
	}
	if got, want := HTTP(srv.URL, Named("api")).Name(), "api"; got != want {
		t.Errorf("Named: got %q, want %q", got, want)
	}
}

// closeCounter counts response bodies opened and closed.
type closeCounter struct {
	rt             http.RoundTripper
	opened, closed atomic.Int32
}

func (c *closeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.opened.Add(1)
	resp.Body = &countedBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	c    *closeCounter
	once atomic.Bool
}

func (b *countedBody) Close() error {
	if b.once.CompareAndSwap(false, true) {
		b.c.closed.Add(1)
	}
	return b.ReadCloser.Close()
}

func TestHTTPClosesEveryBody(t *testing.T) {
	srv := healthServer(t)
	cc := &closeCounter{rt: &http.Transport{}}
	client := &http.Client{Transport: cc}
	for _, path := range []string{"/ok", "/fail", "/huge", "/redirect"} {
		_ = HTTP(srv.URL+path, WithHTTPClient(client), WithBodyContains("z")).Check(guard(t))
	}
	if o, c := cc.opened.Load(), cc.closed.Load(); o == 0 || o != c {
		t.Errorf("bodies: opened %d, closed %d: want all closed", o, c)
	}
}

func TestHTTPDoerSatisfiedByClient(t *testing.T) {
	var _ HTTPDoer = &http.Client{}
	var calls atomic.Int32
	doer := doerFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, context.Canceled
	})
	err := HTTP("http://127.0.0.1:1/x", WithHTTPClient(doer)).Check(guard(t))
	if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
		t.Errorf("got %v after %d calls, want the doer's error after one call", err, calls.Load())
	}
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func TestExcerpt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "(empty)"},
		{"  boom\n", "boom"},
		{"line 1\nline 2\x00\xff", "line 1 line 2??"},
		{strings.Repeat("a", 250), strings.Repeat("a", 200) + "..."},
	}
	for _, tt := range tests {
		if got := excerpt([]byte(tt.in)); got != tt.want {
			t.Errorf("excerpt(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}
