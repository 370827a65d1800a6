package main

import (
	"flag"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/furrow/furrow/pkg/serve"
)

// clientTLS are the flags that let the operator and finance commands call
// a production deployment, which serves gRPC with mutual TLS: the client
// certificate's roles (furrow://role/operator, …/finance) decide what the
// command may do. Without them the commands speak plain gRPC, as to
// `furrow dev`. The variables are FURROW_CLIENT_*, not FURROW_TLS_*, so a
// shell inside a service's container does not pick up the server's own
// certificate.
type clientTLS struct{ ca, cert, key string }

func (c *clientTLS) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.ca, "tls-ca", getenv("FURROW_CLIENT_CA"), "CA certificate that verifies Furrow's servers; turns TLS on [FURROW_CLIENT_CA]")
	fs.StringVar(&c.cert, "tls-cert", getenv("FURROW_CLIENT_CERT"), "your client certificate; its roles say what you may call [FURROW_CLIENT_CERT]")
	fs.StringVar(&c.key, "tls-key", getenv("FURROW_CLIENT_KEY"), "key of --tls-cert [FURROW_CLIENT_KEY]")
}

// dialOption returns the transport credentials the flags ask for.
func (c *clientTLS) dialOption() (grpc.DialOption, error) {
	if c.ca == "" && c.cert == "" && c.key == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	cfg, err := serve.ClientTLS(c.ca, c.cert, c.key)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}
