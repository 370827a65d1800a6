package adapters

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// The simulated provider's files, in its directory.
const (
	// SettlementFile is the provider's settlement file: one line per payout
	// it settled or failed (domain.SettlementColumns), rewritten on every
	// change, the way a provider's daily file would read.
	SettlementFile = "settlement.csv"
	// simJournal is the provider's own record of every payment, one JSON
	// object a line, replayed on start so a restart never pays twice.
	simJournal = "payments.jsonl"
)

// DefaultLateAfterPolls is how many status polls a "late" payout stays
// accepted before the simulated provider completes it.
const DefaultLateAfterPolls = 2

var (
	// ErrProviderTimeout is what the simulated provider returns when it is
	// told to time out: the payment was made, the answer was lost. The
	// caller cannot tell the two apart and must retry with the same payout
	// id, which the provider answers from its record.
	ErrProviderTimeout = errors.New("simulated provider: no answer in time (the instruction may have been executed)")
	// ErrUnknownPayout means the provider never received the payout.
	ErrUnknownPayout = errors.New("simulated provider: unknown payout")
	// ErrInstructionMismatch means a payout id arrived again with another
	// amount, account or farmer: the provider refuses rather than pay.
	ErrInstructionMismatch = errors.New("simulated provider: payout id reused with a different instruction")
)

// SimulatedProviderConfig configures a SimulatedProvider.
type SimulatedProviderConfig struct {
	// Dir holds the settlement file and the provider's journal; empty keeps
	// everything in memory.
	Dir string
	// Now is the provider's clock (settled_at); default time.Now.
	Now func() time.Time
	// LateAfterPolls is how many Status calls a late payout stays accepted;
	// default DefaultLateAfterPolls.
	LateAfterPolls int
}

// SimulatedProvider is a deterministic stand-in for a payment provider,
// for development and tests. Its behaviour is chosen by the payout account,
// so a demo or a system test can ask for each case through the public API
// (RegisterFarmer / UpdatePayoutAccount). The account is split into tokens
// at '-' and '_'; these tokens (any case) change what happens:
//
//	FAIL     the bank rejects the payment (failed at once, or later with LATE)
//	TIMEOUT  the first Send for a payout pays it but returns ErrProviderTimeout
//	LATE     Send only accepts; the payout completes on the LateAfterPolls-th
//	         Status call
//
// Any other account is settled at once. Everything is keyed by payout id:
// Send for a payout it already has returns that payout's receipt and pays
// nothing, so retries never pay twice. References are derived from the
// payout id, and times come from the configured clock.
//
// Concurrency: mu guards the payments and the files; Send and Status may
// be called from several goroutines.
type SimulatedProvider struct {
	dir       string
	now       func() time.Time
	lateAfter int

	mu       sync.Mutex
	payments map[string]*simPayment
}

var _ app.PaymentProvider = (*SimulatedProvider)(nil)

// simPayment is one payout as the provider records it: the instruction
// with its account masked (domain.Mask), and the behaviour the account
// asked for. The simulator's files sit in the ledger's data directory, so
// they keep no account number (a real provider keeps its own records).
type simPayment struct {
	Instruction domain.PayoutInstruction `json:"instruction"`
	Behaviour   simBehaviour             `json:"behaviour"`
	Reference   string                   `json:"reference"`
	Status      string                   `json:"status"` // accepted, settled, failed
	At          time.Time                `json:"at"`
	Reason      string                   `json:"reason,omitempty"`
	// Sends counts the instructions received for the payout (retries
	// included); Polls the status calls while it was accepted.
	Sends int `json:"sends"`
	Polls int `json:"polls"`
	// Seq orders payments by arrival.
	Seq int `json:"seq"`
}

// NewSimulatedProvider returns a simulated provider, replaying its journal
// from cfg.Dir if there is one.
func NewSimulatedProvider(cfg SimulatedProviderConfig) (*SimulatedProvider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LateAfterPolls <= 0 {
		cfg.LateAfterPolls = DefaultLateAfterPolls
	}
	s := &SimulatedProvider{dir: cfg.Dir, now: cfg.Now, lateAfter: cfg.LateAfterPolls, payments: map[string]*simPayment{}}
	if s.dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("simulated provider: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(s.dir, simJournal))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("simulated provider: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var p simPayment
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			// A torn last line (a crash mid-write) is the only expected
			// damage; the payment it described is retried by the ledger.
			continue
		}
		if !strings.HasPrefix(p.Instruction.Account, "••••") {
			// Written by a simulator that kept the number: forget it.
			p.Behaviour, p.Instruction = behaviourOf(p.Instruction.Account), masked(p.Instruction)
		}
		s.payments[p.Instruction.PayoutID] = &p
	}
	return s, sc.Err()
}

// SettlementPath is where the provider writes its settlement file ("" when
// it keeps everything in memory).
func (s *SimulatedProvider) SettlementPath() string {
	if s.dir == "" {
		return ""
	}
	return filepath.Join(s.dir, SettlementFile)
}

// simBehaviour is what the payout account asks the simulator to do.
type simBehaviour struct {
	Fail    bool `json:"fail,omitempty"`
	Timeout bool `json:"timeout,omitempty"`
	Late    bool `json:"late,omitempty"`
}

// masked is the instruction as the simulator records it.
func masked(in domain.PayoutInstruction) domain.PayoutInstruction {
	in.Account = domain.Mask(in.Account)
	return in
}

func behaviourOf(account string) simBehaviour {
	var b simBehaviour
	for _, tok := range strings.FieldsFunc(strings.ToUpper(account), func(r rune) bool { return r == '-' || r == '_' }) {
		switch tok {
		case "FAIL":
			b.Fail = true
		case "TIMEOUT":
			b.Timeout = true
		case "LATE":
			b.Late = true
		}
	}
	return b
}

// reference derives the provider's reference from the payout id.
func reference(payoutID string) string {
	sum := sha256.Sum256([]byte(payoutID))
	return "SIM-" + strings.ToUpper(hex.EncodeToString(sum[:6]))
}

// Send implements app.PaymentProvider.
func (s *SimulatedProvider) Send(ctx context.Context, in domain.PayoutInstruction) (domain.ProviderReceipt, error) {
	if err := ctx.Err(); err != nil {
		return domain.ProviderReceipt{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.payments[in.PayoutID]; ok {
		if p.Instruction != masked(in) {
			return domain.ProviderReceipt{}, fmt.Errorf("%w: %s", ErrInstructionMismatch, in.PayoutID)
		}
		p.Sends++
		if err := s.record(p); err != nil {
			return domain.ProviderReceipt{}, err
		}
		return p.receipt(), nil
	}
	b := behaviourOf(in.Account)
	p := &simPayment{Instruction: masked(in), Behaviour: b, Reference: reference(in.PayoutID), Sends: 1, Seq: len(s.payments) + 1}
	switch {
	case in.PayoutID == "" || in.AmountFen <= 0 || in.Currency != domain.Currency || in.Account == "":
		p.Status, p.At, p.Reason = domain.SettlementFailed, s.now().UTC(), "invalid instruction"
	case b.Late:
		p.Status = "accepted"
	case b.Fail:
		p.Status, p.At, p.Reason = domain.SettlementFailed, s.now().UTC(), "account rejected by the receiving bank"
	default:
		p.Status, p.At = domain.SettlementSettled, s.now().UTC()
	}
	s.payments[in.PayoutID] = p
	if err := s.record(p); err != nil {
		return domain.ProviderReceipt{}, err
	}
	if b.Timeout && p.Sends == 1 {
		return domain.ProviderReceipt{}, ErrProviderTimeout
	}
	return p.receipt(), nil
}

// Status implements app.PaymentProvider.
func (s *SimulatedProvider) Status(ctx context.Context, payoutID string) (domain.ProviderReceipt, error) {
	if err := ctx.Err(); err != nil {
		return domain.ProviderReceipt{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payments[payoutID]
	if !ok {
		return domain.ProviderReceipt{}, fmt.Errorf("%w: %s", ErrUnknownPayout, payoutID)
	}
	if p.Status == "accepted" {
		p.Polls++
		if p.Polls >= s.lateAfter {
			p.Status, p.At = domain.SettlementSettled, s.now().UTC()
			if p.Behaviour.Fail {
				p.Status, p.Reason = domain.SettlementFailed, "returned by the receiving bank"
			}
		}
		if err := s.record(p); err != nil {
			return domain.ProviderReceipt{}, err
		}
	}
	return p.receipt(), nil
}

func (p *simPayment) receipt() domain.ProviderReceipt {
	r := domain.ProviderReceipt{Reference: p.Reference, At: p.At, Reason: p.Reason}
	switch p.Status {
	case domain.SettlementSettled:
		r.Status = domain.ProviderSettled
	case domain.SettlementFailed:
		r.Status = domain.ProviderFailed
	default:
		r.Status = domain.ProviderAccepted
	}
	return r
}

// record appends p to the journal and, when p is complete, rewrites the
// settlement file. Called with mu held.
func (s *SimulatedProvider) record(p *simPayment) error {
	if s.dir == "" {
		return nil
	}
	line, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("simulated provider: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, simJournal), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("simulated provider: %w", err)
	}
	_, werr := f.Write(append(line, '\n'))
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("simulated provider: journal: %w", err)
	}
	if p.Status == "accepted" {
		return nil
	}
	return s.writeSettlement()
}

// writeSettlement rewrites the settlement file from the completed
// payments, ordered by completion time, atomically (temporary file, then
// rename). Called with mu held.
func (s *SimulatedProvider) writeSettlement() error {
	var done []*simPayment
	for _, p := range s.payments {
		if p.Status != "accepted" {
			done = append(done, p)
		}
	}
	slices.SortFunc(done, func(a, b *simPayment) int { return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Seq, b.Seq)) })
	lines := make([]domain.SettlementLine, len(done))
	for i, p := range done {
		lines[i] = domain.SettlementLine{
			ProviderRef: p.Reference, PayoutID: p.Instruction.PayoutID, FarmerID: p.Instruction.FarmerID,
			AmountFen: p.Instruction.AmountFen, Currency: p.Instruction.Currency, Status: p.Status, SettledAt: p.At,
		}
	}
	var buf bytes.Buffer
	if err := domain.FormatSettlement(&buf, lines); err != nil {
		return fmt.Errorf("simulated provider: settlement file: %w", err)
	}
	tmp := filepath.Join(s.dir, SettlementFile+".tmp")
	if err := os.WriteFile(tmp, buf.Bytes(), 0o640); err != nil {
		return fmt.Errorf("simulated provider: settlement file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, SettlementFile)); err != nil {
		return fmt.Errorf("simulated provider: settlement file: %w", err)
	}
	return nil
}
