package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// StartPostgresTLS runs initdb and starts a private Postgres, as the postgres OS user, with
// ssl=on and the server certificate of files, and waits until it answers. Its URL verifies
// it with files' CA (sslmode=verify-full). It serves plain-text clients too, as initdb's
// pg_hba.conf has it, so that a client that gave up on TLS would be seen, not refused: a
// test tells the two apart in pg_stat_ssl. It is stopped by PID and its files are removed
// at cleanup.
func StartPostgresTLS(tb testing.TB, files *TLSFiles) *PostgresServer {
	tb.Helper()
	bin := postgresBinDir(tb)
	dir, err := os.MkdirTemp("", "authsidecar-pgtls-") // not tb.TempDir: see StartPostgresPair
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) }) // runs after the server's Stop (cleanups are LIFO)
	cred := postgresCredential(tb, dir)
	s := &PostgresServer{tb: tb, bin: bin, dataDir: filepath.Join(dir, "data"), cred: cred, caFile: files.CAFile}
	s.run(tb, "initdb", "-D", s.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	// Postgres refuses a key readable by others, or one it does not own (as root it may
	// be root's with mode 0640, but then its group must be the server's).
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	s.writeOwned(tb, cert, readFile(tb, files.ServerCert))
	s.writeOwned(tb, key, readFile(tb, files.ServerKey))
	s.start(tb, "-c", "ssl=on", "-c", "ssl_cert_file="+cert, "-c", "ssl_key_file="+key)
	return s
}

// writeOwned writes body to path, mode 0600, owned by the server's user.
func (s *PostgresServer) writeOwned(tb testing.TB, path string, body []byte) {
	tb.Helper()
	if err := os.WriteFile(path, body, 0o600); err != nil {
		tb.Fatal(err)
	}
	if s.cred != nil {
		if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}
