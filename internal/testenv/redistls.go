package testenv

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Values of RedisTLS's authClients, as redis-server's --tls-auth-clients takes them.
const (
	RedisClientCertRequired = "yes"      // a client without a certificate of the CA is refused
	RedisClientCertOptional = "optional" // a certificate is verified if the client sends one
	RedisClientCertIgnored  = "no"       // none is asked for
)

// redisTLS is a server's TLS setting: its certificates and whether it asks clients for one.
type redisTLS struct {
	files       *TLSFiles
	authClients string
}

// RedisTLS makes the server speak TLS only, with the server certificate of files, on its
// port (--port 0 --tls-port): plain-text clients are not served. authClients is one of the
// RedisClientCert constants. Replication, Sentinel and the cluster bus use TLS as well, and
// a node presents the server certificate to the nodes it connects to. URL then is
// rediss://, and the fixture's own connections (readiness, Client) trust the CA and present
// the client certificate.
func RedisTLS(files *TLSFiles, authClients string) RedisOption {
	return func(s *RedisServer) { s.tls = &redisTLS{files: files, authClients: authClients} }
}

// tlsArgs are the arguments that switch the server to TLS; they come after the plain --port,
// which they override.
func (s *RedisServer) tlsArgs() []string {
	if s.tls == nil {
		return nil
	}
	f := s.tls.files
	return []string{"--port", "0", "--tls-port", strconv.Itoa(s.port),
		"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey, "--tls-ca-cert-file", f.CAFile,
		"--tls-auth-clients", s.tls.authClients, "--tls-replication", "yes", "--tls-cluster", "yes"}
}

// clientTLS is the fixture's TLS configuration for this server, nil without RedisTLS.
func (s *RedisServer) clientTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.files.ClientConfig()
}

// TLS returns the files the server was started with (RedisTLS), or nil.
func (s *RedisServer) TLS() *TLSFiles {
	if s.tls == nil {
		return nil
	}
	return s.tls.files
}

// ping checks the server answers PING, over TLS when it speaks TLS.
func (s *RedisServer) ping() error {
	if s.tls == nil {
		return ping(s.Addr(), s.password)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr(), s.clientTLS())
	if err != nil {
		return err
	}
	return pingOn(conn, s.password)
}

// Client returns a client of this server (over TLS, with the client certificate, when it
// speaks TLS), closed at cleanup.
func (s *RedisServer) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, MaxRetries: -1, TLSConfig: s.clientTLS()})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}
