package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

// The server streams' REST routes (admin.proto), served here: the
// transcoder streams REST responses only as google.api.HttpBody.
// WatchProjection's route ends in a custom verb after the name, which a
// ServeMux pattern cannot express, so streamRoutes matches it by hand.
const (
	tailPath    = "GET /v1/admin/streams/{stream}/events:tail"
	watchPrefix = "/v1/admin/projections/"
	watchSuffix = ":watch"
)

// streamRoutes serves WatchProjection's REST route and hands every other
// request to next.
func streamRoutes(api, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, watchPrefix)
		if name, ok = strings.CutSuffix(name, watchSuffix); !ok || name == "" || strings.Contains(name, "/") || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		req := map[string]any{"name": name}
		if v := q.Get("interval"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				writeHTTPError(w, status.Newf(codes.InvalidArgument, "interval %q: want a duration (250ms, 2s)", v))
				return
			}
			// protojson's spelling of a Duration: seconds with a fraction.
			req["interval"] = strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
		}
		if v := q.Get("until_caught_up"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				writeHTTPError(w, status.Newf(codes.InvalidArgument, "until_caught_up %q: want true or false", v))
				return
			}
			req["until_caught_up"] = b
		}
		serveStream(api, "WatchProjection", req, w, r)
	})
}

// tailREST serves TailEvents' REST route.
func tailREST(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		req := map[string]any{"stream": r.PathValue("stream"), "subject": q.Get("subject")}
		for _, name := range []string{"from_sequence", "last"} {
			if v := q.Get(name); v != "" {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					writeHTTPError(w, status.Newf(codes.InvalidArgument, "%s %q: want a non-negative integer", name, v))
					return
				}
				req[name] = n
			}
		}
		serveStream(api, "TailEvents", req, w, r)
	})
}

// serveStream answers r with the AdminService server stream method
// called with req, as newline-delimited JSON, one response a line,
// flushed as each arrives. It turns the request into a Connect streaming
// call on api, so the call takes the same path (authentication, role
// table, backend) as every other.
func serveStream(api http.Handler, method string, req map[string]any, w http.ResponseWriter, r *http.Request) {
	body, _ := json.Marshal(req)
	var env bytes.Buffer
	env.WriteByte(0)
	_ = binary.Write(&env, binary.BigEndian, uint32(len(body)))
	env.Write(body)
	in, err := http.NewRequestWithContext(r.Context(), http.MethodPost,
		"/"+adminv1.AdminService_ServiceDesc.ServiceName+"/"+method, &env)
	if err != nil {
		writeHTTPError(w, status.New(codes.Internal, err.Error()))
		return
	}
	in.Header = r.Header.Clone()
	in.Header.Set("Content-Type", "application/connect+json")
	in.RemoteAddr, in.Host = r.RemoteAddr, r.Host
	nd := &ndjsonWriter{out: w, header: http.Header{}}
	api.ServeHTTP(nd, in)
	nd.end()
}

// ndjsonWriter takes a Connect streaming response (enveloped JSON
// messages, then an end-of-stream message) and writes each message as a
// line; an error before the first message becomes the HTTP status and a
// google.rpc.Status body, an error after it a final {"error": …} line.
type ndjsonWriter struct {
	out    http.ResponseWriter
	header http.Header
	buf    []byte
	lines  int
	done   bool
	status int
}

func (n *ndjsonWriter) Header() http.Header { return n.header }
func (n *ndjsonWriter) WriteHeader(s int) {
	if n.status == 0 {
		n.status = s
	}
}
func (n *ndjsonWriter) Flush() {}

func (n *ndjsonWriter) Write(b []byte) (int, error) {
	n.buf = append(n.buf, b...)
	for len(n.buf) >= 5 && !n.done {
		size := int(binary.BigEndian.Uint32(n.buf[1:5]))
		if len(n.buf) < 5+size {
			break
		}
		flags, msg := n.buf[0], n.buf[5:5+size]
		if flags&0x02 != 0 {
			n.endStream(msg)
		} else {
			n.line(msg)
		}
		n.buf = n.buf[5+size:]
	}
	return len(b), nil
}

func (n *ndjsonWriter) line(msg []byte) {
	if n.lines == 0 {
		n.out.Header().Set("Content-Type", "application/x-ndjson")
		n.out.WriteHeader(http.StatusOK)
	}
	n.lines++
	_, _ = n.out.Write(append(bytes.TrimSpace(msg), '\n'))
	if f, ok := n.out.(http.Flusher); ok {
		f.Flush()
	}
}

func (n *ndjsonWriter) endStream(msg []byte) {
	n.done = true
	var end struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(msg, &end) != nil || end.Error == nil {
		return
	}
	var c connect.Code
	if c.UnmarshalText([]byte(end.Error.Code)) != nil {
		c = connect.CodeUnknown
	}
	st := status.New(codes.Code(c), end.Error.Message) //nolint:gosec // connect codes are gRPC codes
	if n.lines == 0 {
		writeHTTPError(n.out, st)
		return
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": int(st.Code()), "message": st.Message()}})
	n.line(b)
}

// end reports a response that was not a Connect stream at all (an
// authentication refusal, say) as it came.
func (n *ndjsonWriter) end() {
	if n.lines == 0 && !n.done && len(n.buf) > 0 {
		for k, v := range n.header {
			n.out.Header()[k] = v
		}
		st := n.status
		if st == 0 || st == http.StatusOK {
			st = http.StatusBadGateway
		}
		n.out.WriteHeader(st)
		_, _ = n.out.Write(n.buf)
	}
}
