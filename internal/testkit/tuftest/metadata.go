package tuftest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Helpers for tests that build metadata with go-tuf's metadata package
// directly, for what a Repo does not publish (repositories without
// consistent snapshots, hand-made delegation trees).

// NewMetadataKey returns a new ed25519 private key and its TUF public key.
func NewMetadataKey(t testing.TB) (ed25519.PrivateKey, *metadata.Key) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// SignMetadata replaces the signatures of m with ones by keys.
func SignMetadata[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...ed25519.PrivateKey) {
	t.Helper()
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
}

// EncodeMetadata returns the JSON encoding of m, as a repository serves it.
func EncodeMetadata[T metadata.Roles](t testing.TB, m *metadata.Metadata[T]) []byte {
	t.Helper()
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
