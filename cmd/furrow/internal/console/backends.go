package console

import (
	"google.golang.org/grpc"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// Backends are the gRPC connections the console calls the services
// through: the console has no business logic of its own.
type Backends struct {
	Procurement grpc.ClientConnInterface
	Brand       grpc.ClientConnInterface
	Ledger      grpc.ClientConnInterface
	// Admin serves the AdminService of each process, by the service name
	// its projections carry ("procurement", …). In furrow dev one process
	// runs everything: one entry. In production each service's process
	// serves the AdminService over its own projections and handlers.
	Admin []AdminBackend
}

// AdminBackend is one process's AdminService.
type AdminBackend struct {
	// Name labels it in the console (a service name, or "furrow-dev").
	Name string
	Conn grpc.ClientConnInterface
}

// SingleConn is the Backends of one process serving every service (furrow
// dev).
func SingleConn(conn grpc.ClientConnInterface) Backends {
	return Backends{Procurement: conn, Brand: conn, Ledger: conn, Admin: []AdminBackend{{Name: "furrow-dev", Conn: conn}}}
}

// clients are the typed clients of Backends.
type clients struct {
	proc   procurementv1.ProcurementServiceClient
	brand  brandv1.BrandServiceClient
	ledger ledgerv1.LedgerServiceClient
	admins []adminClient
}

type adminClient struct {
	name string
	adminv1.AdminServiceClient
}

func newClients(b Backends) clients {
	c := clients{
		proc:   procurementv1.NewProcurementServiceClient(b.Procurement),
		brand:  brandv1.NewBrandServiceClient(b.Brand),
		ledger: ledgerv1.NewLedgerServiceClient(b.Ledger),
	}
	for _, a := range b.Admin {
		c.admins = append(c.admins, adminClient{name: a.Name, AdminServiceClient: adminv1.NewAdminServiceClient(a.Conn)})
	}
	return c
}
