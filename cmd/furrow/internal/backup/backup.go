// Package backup copies every JetStream stream, the source of truth, into
// a directory and restores it into an empty server or cluster: `furrow
// admin backup` and `furrow admin restore`.
//
// A backup is the server's own stream snapshot ($JS.API.STREAM.SNAPSHOT:
// the stream's message blocks, its durable consumers with their delivery
// and acknowledgement state, checksummed), taken through the NATS admin
// identity. nats.go has no call for it, so this package speaks the
// protocol itself, as the nats CLI does: the server sends chunks to an
// inbox and waits for each chunk's flow-control acknowledgement; a restore
// ($JS.API.STREAM.RESTORE) sends them back, each acknowledged, then an
// empty message, and the server answers with the restored stream. Every
// message keeps its sequence, subject, headers, data and stored time, and
// every durable its position, so handlers resume where they were.
//
// PostgreSQL needs nothing: every read model is derived from the streams,
// so after a restore the projections are rebuilt from them (a fresh
// database, or `furrow projections rebuild` and swap).
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Manifest describes a backup: manifest.json in its directory.
type Manifest struct {
	// Format is the backup format version.
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	Streams []Stream  `json:"streams"`
}

// Stream is one stream in a backup: its configuration and state when the
// snapshot was taken, and the file that holds the snapshot.
type Stream struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
	// Messages and LastSeq restate State, for people and for checks.
	Messages  uint64 `json:"messages"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumers"`
	File      string `json:"file"`
	Bytes     int64  `json:"bytes"`
}

const (
	format       = 1
	manifestFile = "manifest.json"
	// chunkWait bounds the wait for each chunk or acknowledgement.
	chunkWait = 10 * time.Second
)

// Result is what happened to one stream.
type Result struct {
	Stream    string
	Messages  uint64
	Consumers int
	Bytes     int64
}

func (r Result) String() string {
	return fmt.Sprintf("%s: %d messages, %d consumers, %d bytes", r.Stream, r.Messages, r.Consumers, r.Bytes)
}

// apiError is a JetStream API response's error.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%d, error code %d)", e.Description, e.Code, e.ErrCode)
}

// Backup snapshots every stream of nc's account into dir, which must be
// empty or not exist. Writers may go on appending meanwhile: each
// snapshot is a consistent copy of its stream when it began.
func Backup(ctx context.Context, nc *nats.Conn, dir string) ([]Result, error) {
	if err := emptyDir(dir); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var names []string
	lister := js.StreamNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("backup: list streams: %w", err)
	}
	slices.Sort(names)
	m := Manifest{Format: format, Created: time.Now().UTC()}
	var results []Result
	for _, name := range names {
		s, err := snapshotWithRetry(ctx, nc, js, dir, name)
		if err != nil {
			return results, fmt.Errorf("backup %s: %w", name, err)
		}
		m.Streams = append(m.Streams, s)
		results = append(results, Result{Stream: name, Messages: s.Messages, Consumers: s.Consumers, Bytes: s.Bytes})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return results, err
	}
	// The manifest last: a directory without one is an unfinished backup.
	if err := os.WriteFile(filepath.Join(dir, manifestFile), b, 0o600); err != nil {
		return results, fmt.Errorf("backup: %w", err)
	}
	return results, nil
}

func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("backup: %s is not empty", dir)
	}
	return nil
}

// snapshotAttempts bounds how often a stream's snapshot is tried.
const snapshotAttempts = 5

// serverFailure is a snapshot the server gave up on with a 5xx status:
// on a cluster, a consumer whose state it could not read at that moment
// (its leader moving), which passes.
type serverFailure struct{ status, description string }

func (e *serverFailure) Error() string { return "snapshot failed: " + e.status + " " + e.description }

// snapshotWithRetry snapshots a stream, trying again, from the start and
// into a fresh file, when the server failed it for a passing reason.
func snapshotWithRetry(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, dir, name string) (Stream, error) {
	for attempt := 1; ; attempt++ {
		s, err := snapshot(ctx, nc, js, dir, name)
		var sf *serverFailure
		if err == nil || !errors.As(err, &sf) || attempt == snapshotAttempts {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return s, err
		}
		if rerr := os.Remove(filepath.Join(dir, name+".snapshot")); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return Stream{}, rerr
		}
		select {
		case <-ctx.Done():
			return Stream{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}

func snapshot(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, dir, name string) (Stream, error) {
	// The consumers, for the record (the snapshot's state counts them
	// differently on a cluster). Their names come from the meta layer: a
	// clustered list of infos may count one twice while its leader moves.
	st, err := js.Stream(ctx, name)
	if err != nil {
		return Stream{}, err
	}
	consumers := 0
	cl := st.ConsumerNames(ctx)
	for range cl.Name() {
		consumers++
	}
	if err := cl.Err(); err != nil {
		return Stream{}, fmt.Errorf("list consumers: %w", err)
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return Stream{}, err
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "jsck": true})
	rctx, cancel := context.WithTimeout(ctx, chunkWait)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.SNAPSHOT."+name, req)
	if err != nil {
		return Stream{}, fmt.Errorf("snapshot request: %w", err)
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return Stream{}, fmt.Errorf("snapshot response: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.Code >= 500 {
			return Stream{}, &serverFailure{status: strconv.Itoa(resp.Error.Code), description: resp.Error.Description}
		}
		return Stream{}, fmt.Errorf("snapshot: %w", resp.Error)
	}
	var state struct {
		Msgs    uint64 `json:"messages"`
		LastSeq uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal(resp.State, &state); err != nil {
		return Stream{}, fmt.Errorf("snapshot state: %w", err)
	}
	s := Stream{Name: name, Config: resp.Config, State: resp.State, Messages: state.Msgs, LastSeq: state.LastSeq,
		Consumers: consumers, File: name + ".snapshot"}
	f, err := os.OpenFile(filepath.Join(dir, s.File), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Stream{}, err
	}
	defer f.Close()
	for {
		cctx, cancel := context.WithTimeout(ctx, chunkWait)
		chunk, err := sub.NextMsgWithContext(cctx)
		cancel()
		if err != nil {
			return Stream{}, fmt.Errorf("snapshot chunk after %d bytes: %w", s.Bytes, err)
		}
		if len(chunk.Data) == 0 {
			// The end, with a status: 204 (or none) done, else the
			// server's reason.
			if st := chunk.Header.Get("Status"); st != "" && st != "204" {
				if strings.HasPrefix(st, "5") {
					return Stream{}, &serverFailure{status: st, description: chunk.Header.Get("Description")}
				}
				return Stream{}, fmt.Errorf("snapshot failed: %s %s", st, chunk.Header.Get("Description"))
			}
			break
		}
		n, err := f.Write(chunk.Data)
		s.Bytes += int64(n)
		if err != nil {
			return Stream{}, err
		}
		if chunk.Reply != "" {
			if err := nc.Publish(chunk.Reply, nil); err != nil { // flow control: the next chunk
				return Stream{}, err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return Stream{}, err
	}
	return s, f.Close()
}

// RestoreOptions change how streams are restored.
type RestoreOptions struct {
	// Replicas, if not 0, replaces each stream's saved replicas (restoring
	// a 3-node cluster's backup onto one server for a drill).
	Replicas int
}

// Restore recreates every stream of the backup in dir through nc, whose
// server or cluster must have none of them: same messages at the same
// sequences and times, same durable consumers at the same positions.
func Restore(ctx context.Context, nc *nats.Conn, dir string, opts RestoreOptions) ([]Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("restore: %w (an unfinished backup has no manifest)", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("restore: %s: %w", manifestFile, err)
	}
	if m.Format != format {
		return nil, fmt.Errorf("restore: backup format %d, want %d", m.Format, format)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	// Refuse before changing anything: a restore goes into an empty
	// server, never over events.
	for _, s := range m.Streams {
		if _, err := js.Stream(ctx, s.Name); err == nil {
			return nil, fmt.Errorf("restore: stream %s exists: restore into a server without it", s.Name)
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("restore: %s: %w", s.Name, err)
		}
	}
	var results []Result
	for _, s := range m.Streams {
		if err := restoreStream(ctx, nc, js, dir, s, opts); err != nil {
			return results, fmt.Errorf("restore %s: %w", s.Name, err)
		}
		results = append(results, Result{Stream: s.Name, Messages: s.Messages, Consumers: s.Consumers, Bytes: s.Bytes})
	}
	return results, nil
}

func restoreStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, dir string, s Stream, opts RestoreOptions) error {
	var cfg map[string]any
	if err := json.Unmarshal(s.Config, &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if opts.Replicas > 0 {
		cfg["num_replicas"] = opts.Replicas
	}
	delete(cfg, "placement") // the new cluster's own names and tags
	req, err := json.Marshal(map[string]any{"config": cfg, "state": s.State})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, chunkWait)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.RESTORE."+s.Name, req)
	if err != nil {
		return fmt.Errorf("restore request: %w", err)
	}
	var resp struct {
		Error          *apiError `json:"error"`
		DeliverSubject string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restore response: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("restore: %w", resp.Error)
	}
	f, err := os.Open(filepath.Join(dir, s.File))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 128*1024)
	var sent int64
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := sendChunk(ctx, nc, resp.DeliverSubject, buf[:n]); err != nil {
				return fmt.Errorf("after %d bytes: %w", sent, err)
			}
			sent += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if sent != s.Bytes {
		return fmt.Errorf("%s holds %d bytes, the manifest says %d", s.File, sent, s.Bytes)
	}
	// The end: the server answers once the stream is restored.
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer dcancel()
	done, err := nc.RequestWithContext(dctx, resp.DeliverSubject, nil)
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	var fin struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(done.Data, &fin); err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if fin.Error != nil {
		return fmt.Errorf("finish: %w", fin.Error)
	}
	st, err := js.Stream(ctx, s.Name)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != s.Messages || info.State.LastSeq != s.LastSeq {
		return fmt.Errorf("restored %d messages up to sequence %d, the backup has %d up to %d",
			info.State.Msgs, info.State.LastSeq, s.Messages, s.LastSeq)
	}
	return nil
}

// sendChunk sends one chunk and waits for the server to take it: an
// empty reply, or an error.
func sendChunk(ctx context.Context, nc *nats.Conn, subject string, chunk []byte) error {
	cctx, cancel := context.WithTimeout(ctx, chunkWait)
	defer cancel()
	reply, err := nc.RequestWithContext(cctx, subject, chunk)
	if err != nil {
		return err
	}
	if len(reply.Data) > 0 {
		var r struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(reply.Data, &r) == nil && r.Error != nil {
			return r.Error
		}
	}
	return nil
}
