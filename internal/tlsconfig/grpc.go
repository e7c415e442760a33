package tlsconfig

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// GRPCServerOptions checks that addr may be served as configured
// (CheckListen, flag naming the address flag) and returns the gRPC server
// option carrying the TLS credentials (none for plaintext). what names the
// port in errors.
func (s Server) GRPCServerOptions(what, flag, addr string) ([]grpc.ServerOption, error) {
	if err := s.CheckListen(flag, addr); err != nil {
		return nil, err
	}
	tc, err := s.Config(what)
	if err != nil || tc == nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, nil
}

// GRPCDialOptions are the dial options of a client with this TLS (nil for
// plaintext: the caller's default applies). prefix names the flags in
// errors ("--xds").
func (c Client) GRPCDialOptions(prefix string) ([]grpc.DialOption, error) {
	tc, err := c.Config(prefix)
	if err != nil || tc == nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, nil
}
