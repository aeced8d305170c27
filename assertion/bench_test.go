package assertion

import (
	"crypto"
	"testing"
)

// The cost of one assertion: signed afresh with each algorithm, and reused from the cache
// (the hot path of a session's requests after its first).

func benchAssertion(b *testing.B, key crypto.Signer, cacheSize int) {
	s := newSigner(b, Options{Key: key, CacheSize: cacheSize})
	if _, err := s.Assertion(jose, t0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Assertion(jose, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAssertionSignEd25519(b *testing.B) { benchAssertion(b, newEd25519(b), 0) }
func BenchmarkAssertionSignES256(b *testing.B)   { benchAssertion(b, newP256(b), 0) }
func BenchmarkAssertionReused(b *testing.B)      { benchAssertion(b, newEd25519(b), 1000) }
