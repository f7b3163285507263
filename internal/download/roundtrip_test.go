package download

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// answer is one response of planServer: a status (0: stall until the
// client goes away; -1: cut the body short), a Retry-After header unless
// empty, and a body.
type answer struct {
	status     int
	retryAfter string
	body       string
}

// planServer answers its requests in turn from plan (the last answer
// repeats) and records the request bodies it received.
type planServer struct {
	*httptest.Server
	plan []answer

	mu     sync.Mutex
	bodies []string
	marked int // requests that came with ownHeader
}

func newPlanServer(t *testing.T, plan ...answer) *planServer {
	t.Helper()
	s := &planServer{plan: plan}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *planServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, string(body))
	if r.Header.Get(ownHeader) != "" {
		s.marked++
	}
	a := s.plan[min(len(s.bodies), len(s.plan))-1]
	s.mu.Unlock()
	switch a.status {
	case 0:
		<-r.Context().Done()
	case -1:
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("short"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	default:
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}
}

func (s *planServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// TestRoundTripper: a request sent through Client.RoundTripper by other
// code than the Client obeys the Client's rules for small requests:
// Pause before each attempt, retries of 5xx, 429 (with Retry-After) and
// bodies cut short within RetryMax (the last answer returned when they
// are spent), none of other answers, a body bounded by maxBody and
// handed back whole, the stall limit and MetadataTimeout; a request body
// is sent again with each retry.
func TestRoundTripper(t *testing.T) {
	errMetered := errors.New("link metered")
	tests := []struct {
		name       string
		plan       []answer
		cfg        Config
		post       string // a POST with this body; empty: GET
		refuse     bool   // Pause refuses
		wantStatus int
		wantBody   string
		wantErr    error
		wantLength bool // *metadata.ErrDownloadLengthMismatch
		wantReqs   int
	}{
		{name: "503 then 429 then token", plan: []answer{{status: 503}, {status: 429, retryAfter: "0"}, {status: 200, body: "token"}},
			wantStatus: 200, wantBody: "token", wantReqs: 3},
		{name: "503 outlasts the retries", plan: []answer{{status: 503, body: "busy"}}, cfg: Config{RetryMax: 2},
			wantStatus: 503, wantBody: "busy", wantReqs: 3},
		{name: "401 not retried", plan: []answer{{status: 401, body: "who?"}}, wantStatus: 401, wantBody: "who?", wantReqs: 1},
		{name: "body cut short", plan: []answer{{status: -1}, {status: 200, body: "token"}}, wantStatus: 200, wantBody: "token", wantReqs: 2},
		{name: "body over maxBody", plan: []answer{{status: 200, body: strings.Repeat("x", 101)}},
			wantLength: true, wantReqs: 1},
		{name: "POST sent again", plan: []answer{{status: 500}, {status: 200, body: "token"}}, post: "grant_type=refresh_token",
			wantStatus: 200, wantBody: "token", wantReqs: 2},
		{name: "Pause refuses", plan: []answer{{status: 200}}, refuse: true, wantErr: errMetered},
		{name: "stall", plan: []answer{{status: 0}}, cfg: Config{StallTimeout: 100 * time.Millisecond, RetryMax: 1},
			wantErr: ErrStalled, wantReqs: 2},
		{name: "deadline", plan: []answer{{status: 0}}, cfg: Config{MetadataTimeout: 200 * time.Millisecond},
			wantErr: ErrDeadline, wantReqs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPlanServer(t, tt.plan...)
			var pauses atomic.Int32
			tt.cfg.Pause = func(context.Context) error {
				pauses.Add(1)
				if tt.refuse {
					return errMetered
				}
				return nil
			}
			c, _ := newTestClient(t, tt.cfg)
			hc := &http.Client{Transport: c.RoundTripper(srv.Client().Transport, 100)}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/token", nil)
			if tt.post != "" {
				req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/token", strings.NewReader(tt.post))
			}
			resp, err := hc.Do(req)
			got := srv.requests()
			var le *metadata.ErrDownloadLengthMismatch
			switch {
			case tt.wantLength:
				if !errors.As(err, &le) {
					t.Fatalf("got %v, want a length mismatch", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
					t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
				}
			}
			if len(got) != tt.wantReqs {
				t.Errorf("%d requests, want %d", len(got), tt.wantReqs)
			}
			if p := int(pauses.Load()); p < len(got) || p == 0 {
				t.Errorf("Pause asked %d times for %d requests, want once before each", p, len(got))
			}
			for _, b := range got {
				if b != tt.post {
					t.Errorf("request body %q, want %q", b, tt.post)
				}
			}
		})
	}
}

// tokenLayer stands for a registry's auth transport between a Client and
// its RoundTripper: before each request of the Client it asks the token
// service for a token, with the request's own context (as
// go-containerregistry refreshes a token on a 401, with a context derived
// from it).
type tokenLayer struct {
	rt       http.RoundTripper
	tokenURL string
}

func (l tokenLayer) RoundTrip(r *http.Request) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, l.tokenURL, nil)
	resp, err := (&http.Client{Transport: l.rt}).Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return l.rt.RoundTrip(r)
}

// TestRoundTripperOwnRequests: the Client's own requests go through the
// RoundTripper untouched (a file that fails with 503 every time is asked
// for RetryMax+1 times, not (RetryMax+1)²), while a request a layer makes
// in the middle of one of them gets the RoundTripper's retries (a token
// service that answers 503 once is asked twice, before the first request
// for the file).
func TestRoundTripperOwnRequests(t *testing.T) {
	file := newPlanServer(t, answer{status: 503})
	token := newPlanServer(t, answer{status: 503}, answer{status: 200, body: "token"})
	hc := &http.Client{}
	c, err := New(Config{HTTPClient: hc, RetryMax: 2, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc.Transport = tokenLayer{rt: c.RoundTripper(file.Client().Transport, 1<<10), tokenURL: token.URL}
	_, err = c.Get(t.Context(), []string{file.URL + "/file"}, 1<<10)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Get: %v, want a StatusError 503", err)
	}
	if got := len(file.requests()); got != 3 {
		t.Errorf("file asked %d times, want 3 (RetryMax+1)", got)
	}
	if got := len(token.requests()); got != 4 {
		t.Errorf("token asked %d times, want 4 (twice for the first request, then once for each retry)", got)
	}
	for _, s := range []*planServer{file, token} {
		s.mu.Lock()
		if s.marked != 0 {
			t.Errorf("%d requests reached a server with the %s header, want none", s.marked, ownHeader)
		}
		s.mu.Unlock()
	}
}

// TestWrongProtocolNotRetried: an HTTPS request to a server that speaks
// plain HTTP fails at once, through the RoundTripper and through Get
// alike: no retry can cure it.
func TestWrongProtocolNotRetried(t *testing.T) {
	for _, via := range []string{"RoundTripper", "Get"} {
		t.Run(via, func(t *testing.T) {
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, Config{RetryMax: 3})
			u := "https://" + srv.Listener.Addr().String() + "/v2/"
			var err error
			if via == "Get" {
				_, err = c.Get(t.Context(), []string{u}, 1<<10)
			} else {
				_, err = (&http.Client{Transport: c.RoundTripper(http.DefaultTransport.(*http.Transport).Clone(), 1<<10)}).Get(u)
			}
			if err == nil {
				t.Fatal("an HTTPS request to a plain HTTP server succeeded")
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1 (no retry): %v", n, err)
			}
		})
	}
}

// TestRoundTripperNestedNoStall: the time a token request made in the
// middle of one of the Client's requests takes (here a Retry-After of one
// second, beyond the stall timeout) is not a stall of the request that
// waits for it: the Fetch makes one request, not two. Without the pause
// of the outer watch, the wait for the token ended the first attempt as
// stalled.
func TestRoundTripperNestedNoStall(t *testing.T) {
	content := []byte("layer bytes")
	file := newPlanServer(t, answer{status: 200, body: string(content)})
	token := newPlanServer(t, answer{status: 503, retryAfter: "1"}, answer{status: 200, body: "token"})
	hc := &http.Client{}
	c, err := New(Config{HTTPClient: hc, StallTimeout: 200 * time.Millisecond, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hc.Transport = tokenLayer{rt: c.RoundTripper(file.Client().Transport, 1<<10), tokenURL: token.URL}
	sink := &memSink{}
	res, err := c.Fetch(t.Context(), Request{URLs: []string{file.URL + "/file"}, Length: int64(len(content))}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 1 || len(token.requests()) != 2 {
		t.Errorf("%d attempts for the file and %d token requests, want 1 and 2", res.Requests, len(token.requests()))
	}
}

// TestPauseBeforeRetries: Config.Pause comes before every request,
// retries included, in Get and Fetch alike, and a Pause that refuses
// before a retry ends the request there. Before, only the first attempt
// of each call was paused: a request retried into a metered link went out.
func TestPauseBeforeRetries(t *testing.T) {
	errMetered := errors.New("metered link")
	tests := []struct {
		name      string
		refuseAt  int // the Pause call that refuses (0: none)
		wantReqs  int
		wantPause int // at least
		wantErr   error
	}{
		{name: "two 503, then 200", wantReqs: 3, wantPause: 3},
		{name: "Pause refuses the first retry", refuseAt: 2, wantReqs: 1, wantPause: 2, wantErr: errMetered},
	}
	for _, via := range []string{"Get", "Fetch"} {
		for _, tt := range tests {
			t.Run(via+"/"+tt.name, func(t *testing.T) {
				srv := newPlanServer(t, answer{status: 503}, answer{status: 503}, answer{status: 200, body: "metadata"})
				var calls atomic.Int32
				c, _ := newTestClient(t, Config{RetryMax: 4, Pause: func(context.Context) error {
					if n := calls.Add(1); int(n) == tt.refuseAt {
						return errMetered
					}
					return nil
				}})
				var err error
				if via == "Get" {
					_, err = c.Get(t.Context(), []string{srv.URL}, 1<<10)
				} else {
					_, err = c.Fetch(t.Context(), Request{URLs: []string{srv.URL}, Length: int64(len("metadata"))}, &memSink{}, nil)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if got := len(srv.requests()); got != tt.wantReqs {
					t.Errorf("requests: got %d, want %d", got, tt.wantReqs)
				}
				if got := int(calls.Load()); got < tt.wantPause {
					t.Errorf("Pause calls: got %d, want at least %d (one before each request)", got, tt.wantPause)
				}
			})
		}
	}
}
