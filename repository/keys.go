package repository

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/durable"
)

// KeyType names a signature algorithm for new keys.
type KeyType string

// Key types.
const (
	// Ed25519 is the default key type.
	Ed25519 KeyType = "ed25519"
	// ECDSAP256 is ECDSA on NIST P-256 with SHA-256, for hardware tokens
	// and HSMs that lack Ed25519.
	ECDSAP256 KeyType = "ecdsa-p256"
)

// pemType is the PEM block type of a private key file.
const pemType = "PRIVATE KEY"

// ErrBadKey is wrapped by errors about unreadable or unsupported keys.
var ErrBadKey = errors.New("repository: bad key")

// Key is a private signing key together with its TUF public key. It is safe
// for concurrent use.
type Key struct {
	typ    KeyType
	priv   crypto.Signer
	signer signature.Signer
	public *metadata.Key
	id     string
}

// GenerateKey makes a new private key of type t ("" means Ed25519).
func GenerateKey(t KeyType) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch t {
	case "", Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("%w: unknown key type %q (want %q or %q)", ErrBadKey, t, Ed25519, ECDSAP256)
	}
	if err != nil {
		return nil, fmt.Errorf("repository: generate key: %w", err)
	}
	return newKey(priv)
}

func newKey(priv crypto.Signer) (*Key, error) {
	k := &Key{priv: priv}
	var err error
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		k.typ = Ed25519
		k.signer, err = signature.LoadED25519Signer(p)
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA curve %s, want P-256", ErrBadKey, p.Curve.Params().Name)
		}
		k.typ = ECDSAP256
		k.signer, err = signature.LoadECDSASigner(p, crypto.SHA256)
	default:
		return nil, fmt.Errorf("%w: unsupported private key type %T", ErrBadKey, priv)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	k.public, err = metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	k.id, err = k.public.ID()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

// ParseKey decodes a PEM-encoded PKCS#8 private key (Ed25519 or ECDSA
// P-256), as written by [Key.MarshalPEM].
func ParseKey(data []byte) (*Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadKey)
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrBadKey, block.Type, pemType)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrBadKey)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: unsupported private key type %T", ErrBadKey, priv)
	}
	return newKey(s)
}

// MarshalPEM encodes the private key as a PEM PKCS#8 block.
func (k *Key) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("repository: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// ID returns the TUF key id: the hex sha256 of the canonical public key.
func (k *Key) ID() string { return k.id }

// Type returns the key's algorithm.
func (k *Key) Type() KeyType { return k.typ }

// Public returns a copy of the TUF public key, as listed in root metadata.
func (k *Key) Public() *metadata.Key {
	c := *k.public
	return &c
}

// Signer returns the key as a sigstore signer, as go-tuf's
// [metadata.Metadata.Sign] takes it.
func (k *Key) Signer() signature.Signer { return k.signer }

// WriteFile writes the private key to path with 0600 permissions. It
// refuses to overwrite an existing file, so a key is never lost.
func (k *Key) WriteFile(path string) error {
	data, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("repository: key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("repository: write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("repository: write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("repository: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("repository: write key: %w", err)
	}
	return durable.SyncDir(filepath.Dir(path))
}

// KeyFileName is the file name [Repo] tools give a key of role:
// "<role>-<first 16 hex digits of the key id>.pem". Only the content of a
// key file matters when loading it.
func KeyFileName(role string, k *Key) string {
	return role + "-" + k.ID()[:16] + ".pem"
}

// LoadKeyFile reads one private key file. It refuses a file readable by
// group or others, as ssh does.
func LoadKeyFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("repository: key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has permissions %v, want 0600", ErrBadKey, path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("repository: key: %w", err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadKeys reads every *.pem file of dir, sorted by name. A missing
// directory yields no keys.
func LoadKeys(dir string) ([]*Key, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repository: keys: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pem") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var keys []*Key
	for _, n := range names {
		k, err := LoadKeyFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}
