// Package httpapi serves Furrow's gRPC services as HTTP/JSON for backends
// that cannot speak gRPC: gRPC-JSON transcoding of the google.api.http
// annotations in proto/ (connectrpc.com/vanguard), and the OpenAPI document
// buf generates from the same annotations (openapi.swagger.json, embedded).
//
// Nothing here is hand-written per RPC: a request is transcoded into a gRPC
// call and handed to a backend that speaks gRPC — the process's own
// *grpc.Server (furrow dev), whose interceptors then map errors, check
// input and keep idempotency exactly as for gRPC clients, or a Proxy to a
// remote service (the `furrow console` gateway), guarded by Authorize.
package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

//go:embed openapi.swagger.json
var openAPI []byte

// OpenAPI returns the OpenAPI (Swagger 2.0) document of the HTTP/JSON API.
func OpenAPI() []byte { return openAPI }

// ServeOpenAPI serves the OpenAPI document (GET /openapi.json).
func ServeOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// Services are the full names of the services the HTTP API serves.
var Services = []string{
	procurementv1.ProcurementService_ServiceDesc.ServiceName,
	brandv1.BrandService_ServiceDesc.ServiceName,
	ledgerv1.LedgerService_ServiceDesc.ServiceName,
	adminv1.AdminService_ServiceDesc.ServiceName,
}

// MaxMessageBytes bounds a request or response the transcoder buffers (a
// settlement file is the largest thing a client sends).
const MaxMessageBytes = 32 << 20

// New returns the HTTP/JSON API. backend returns, for each name in
// Services, the handler that serves that service over the gRPC protocol.
//
// JSON uses the fields' proto names (net_grams, as the proto comments and
// error messages spell them); unknown fields are refused rather than
// ignored, so a misspelt field is a 400 instead of a silent zero. Errors
// are google.rpc.Status as JSON (code, message, details with the
// google.rpc.BadRequest field violations); the HTTP status follows the
// gRPC code (StatusFromCode).
func New(backend func(service string) http.Handler) (http.Handler, error) {
	services := make([]*vanguard.Service, 0, len(Services))
	for _, name := range Services {
		h := backend(name)
		if h == nil {
			return nil, fmt.Errorf("httpapi: no backend for %s", name)
		}
		services = append(services, vanguard.NewService(name, h))
	}
	t, err := vanguard.NewTranscoder(services,
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(MaxMessageBytes),
		),
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return jsonCodec{vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res, UseProtoNames: true, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
			}}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	return remapStatus(t), nil
}

// Routes registers the API on mux: the annotated REST routes under /v1/
// (the server streams', TailEvents and WatchProjection, as newline-delimited
// JSON), each service's own path
// (Connect, gRPC-Web and gRPC clients), and GET /openapi.json.
func Routes(mux *http.ServeMux, api http.Handler) {
	mux.Handle("/v1/", streamRoutes(api, api))
	mux.Handle(tailPath, tailREST(api))
	for _, name := range Services {
		mux.Handle("/"+name+"/", api)
	}
	mux.HandleFunc("GET /openapi.json", ServeOpenAPI)
}

// jsonCodec is vanguard's JSON codec whose decoding errors are the
// client's fault (INVALID_ARGUMENT, 400) rather than UNKNOWN (500): a body
// that is not JSON, a misspelt field, a string where a number belongs.
type jsonCodec struct{ vanguard.JSONCodec }

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return nil
}

func (c jsonCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	if err := c.JSONCodec.UnmarshalField(data, msg, field); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return nil
}

// StatusFromCode is the HTTP status of an error with gRPC code c. It is
// Google's mapping except FAILED_PRECONDITION, which is 412 rather than
// 400, so that a client can tell "your request is malformed" (400,
// INVALID_ARGUMENT) from "the state does not allow it" (412: a closed
// programme, over budget, more than is available).
func StatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// remapStatus rewrites the HTTP status of REST error responses from the
// code in their body (vanguard uses Google's table, StatusFromCode
// differs). Only error bodies are held back; successful and streaming
// responses pass straight through.
func remapStatus(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		rw := &errorWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		rw.finish()
	})
}

// errorWriter holds back an error response (status >= 400) until the
// handler is done, then writes it with the status its body's code maps to.
type errorWriter struct {
	http.ResponseWriter
	status int
	held   bool
	body   bytes.Buffer
}

func (w *errorWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if status >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.held = true
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *errorWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes through unless an error is held back.
func (w *errorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.held {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *errorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *errorWriter) finish() {
	if !w.held {
		return
	}
	status := w.status
	var st struct {
		Code *int `json:"code"`
	}
	if json.Unmarshal(w.body.Bytes(), &st) == nil && st.Code != nil {
		status = StatusFromCode(codes.Code(*st.Code)) //nolint:gosec // a gRPC code, 0 to 16
	}
	w.ResponseWriter.WriteHeader(status)
	_, _ = w.ResponseWriter.Write(w.body.Bytes())
}
