package eventstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// NewEvent marshals a protobuf payload into an event on subject. The event
// type is the message's full name and the schema version is taken from the
// package's version suffix (furrow.ledger.events.v1 → 1).
func NewEvent(subject string, msg proto.Message, md Metadata) (Event, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return Event{}, fmt.Errorf("marshal %s: %w", subject, err)
	}
	desc := msg.ProtoReflect().Descriptor()
	return Event{
		Subject:       subject,
		Type:          string(desc.FullName()),
		SchemaVersion: schemaVersion(desc.ParentFile().Package()),
		Data:          data,
		Metadata:      md,
	}, nil
}

// Decode unmarshals a recorded event's payload into its registered protobuf
// type. The type must be linked into the binary (import its package).
func Decode(r Recorded) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(r.Type))
	if err != nil {
		return nil, fmt.Errorf("%w: %s seq %d: unknown type %q", ErrNotAnEvent, r.Stream, r.Sequence, r.Type)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(r.Data, msg); err != nil {
		return nil, fmt.Errorf("%w: %s seq %d: decode %s: %v", ErrNotAnEvent, r.Stream, r.Sequence, r.Type, err)
	}
	return msg, nil
}

// Fingerprint hashes a request message deterministically, so a request id
// reused with different content can be told from a retry.
func Fingerprint(msg proto.Message) string {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		// Marshalling a valid in-memory message does not fail; if it ever
		// did, an empty fingerprint would only weaken the reuse check.
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

func schemaVersion(pkg protoreflect.FullName) int {
	last := string(pkg.Name())
	if n, err := strconv.Atoi(strings.TrimPrefix(last, "v")); err == nil && strings.HasPrefix(last, "v") {
		return n
	}
	return 1
}
