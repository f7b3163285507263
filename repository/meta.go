package repository

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Role names of the four top-level TUF roles.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

// Roles lists the top-level roles in signing order.
var Roles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

func validRole(role string) error {
	for _, r := range Roles {
		if r == role {
			return nil
		}
	}
	return fmt.Errorf("repository: unknown role %q (want root, targets, snapshot or timestamp)", role)
}

// meta is a pointer to one of go-tuf's four Metadata[T] types.
type meta = any

// common gives access to the fields every role shares.
func common(m meta) (version *int64, expires *time.Time, sigs *[]metadata.Signature, signed any) {
	switch m := m.(type) {
	case *metadata.Metadata[metadata.RootType]:
		return &m.Signed.Version, &m.Signed.Expires, &m.Signatures, &m.Signed
	case *metadata.Metadata[metadata.TargetsType]:
		return &m.Signed.Version, &m.Signed.Expires, &m.Signatures, &m.Signed
	case *metadata.Metadata[metadata.SnapshotType]:
		return &m.Signed.Version, &m.Signed.Expires, &m.Signatures, &m.Signed
	case *metadata.Metadata[metadata.TimestampType]:
		return &m.Signed.Version, &m.Signed.Expires, &m.Signatures, &m.Signed
	}
	panic(fmt.Sprintf("repository: not metadata: %T", m))
}

func toBytes(m meta) ([]byte, error) {
	var b []byte
	var err error
	switch m := m.(type) {
	case *metadata.Metadata[metadata.RootType]:
		b, err = m.ToBytes(true)
	case *metadata.Metadata[metadata.TargetsType]:
		b, err = m.ToBytes(true)
	case *metadata.Metadata[metadata.SnapshotType]:
		b, err = m.ToBytes(true)
	case *metadata.Metadata[metadata.TimestampType]:
		b, err = m.ToBytes(true)
	default:
		panic(fmt.Sprintf("repository: not metadata: %T", m))
	}
	if err != nil {
		return nil, fmt.Errorf("repository: encode metadata: %w", err)
	}
	return b, nil
}

// roleOf returns the "_type" of serialized metadata.
func roleOf(data []byte) (string, error) {
	var probe struct {
		Signed struct {
			Type string `json:"_type"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return "", fmt.Errorf("repository: not TUF metadata: %w", err)
	}
	if err := validRole(probe.Signed.Type); err != nil {
		return "", fmt.Errorf("repository: not top-level TUF metadata: %w", err)
	}
	return probe.Signed.Type, nil
}

// parse decodes metadata of the given role.
func parse(role string, data []byte) (meta, error) {
	var m meta
	var err error
	switch role {
	case RoleRoot:
		m, err = (&metadata.Metadata[metadata.RootType]{}).FromBytes(data)
	case RoleTargets:
		m, err = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data)
	case RoleSnapshot:
		m, err = (&metadata.Metadata[metadata.SnapshotType]{}).FromBytes(data)
	case RoleTimestamp:
		m, err = (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(data)
	default:
		if err := validDelegatedName(role); err != nil {
			return nil, err
		}
		m, err = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data)
	}
	if err != nil {
		return nil, fmt.Errorf("repository: parse %s metadata: %w", role, err)
	}
	return m, nil
}

// parseAny decodes top-level metadata of any role.
func parseAny(data []byte) (string, meta, error) {
	role, err := roleOf(data)
	if err != nil {
		return "", nil, err
	}
	m, err := parse(role, data)
	return role, m, err
}

func clone(role string, m meta) meta {
	b, err := toBytes(m)
	if err != nil {
		panic(err) // metadata we built always encodes
	}
	c, err := parse(role, b)
	if err != nil {
		panic(err)
	}
	return c
}

// canonicalSigned is the byte string signatures are made over.
func canonicalSigned(m meta) ([]byte, error) {
	_, _, _, signed := common(m)
	b, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, fmt.Errorf("repository: canonical JSON: %w", err)
	}
	return b, nil
}

func sameSigned(a, b meta) (bool, error) {
	ca, err := canonicalSigned(a)
	if err != nil {
		return false, err
	}
	cb, err := canonicalSigned(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ca, cb), nil
}

// verifySignature checks one signature over payload with a TUF public key,
// choosing the hash as go-tuf does.
func verifySignature(key *metadata.Key, payload, sig []byte) error {
	pub, err := key.ToPublicKey()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	var v signature.Verifier
	if p, ok := pub.(ed25519.PublicKey); ok {
		v, err = signature.LoadED25519Verifier(p)
	} else {
		h := crypto.SHA256
		if key.Scheme == metadata.KeySchemeECDSA_SHA2_P384 {
			h = crypto.SHA384
		}
		v, err = signature.LoadVerifier(pub, h)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload))
}

func signWith(m meta, k *Key) error {
	var err error
	switch m := m.(type) {
	case *metadata.Metadata[metadata.RootType]:
		_, err = m.Sign(k.signer)
	case *metadata.Metadata[metadata.TargetsType]:
		_, err = m.Sign(k.signer)
	case *metadata.Metadata[metadata.SnapshotType]:
		_, err = m.Sign(k.signer)
	case *metadata.Metadata[metadata.TimestampType]:
		_, err = m.Sign(k.signer)
	}
	if err != nil {
		return fmt.Errorf("repository: sign with key %s: %w", k.ID(), err)
	}
	return nil
}

func hasSig(m meta, keyID string) bool {
	_, _, sigs, _ := common(m)
	for _, s := range *sigs {
		if s.KeyID == keyID {
			return true
		}
	}
	return false
}

// verifyRole checks that m carries enough valid signatures of role's keys
// listed in root.
func verifyRole(root *metadata.Metadata[metadata.RootType], role string, m meta) error {
	if err := root.VerifyDelegate(role, m); err != nil {
		return fmt.Errorf("%s v%d: %w", role, versionOf(m), err)
	}
	return nil
}

func versionOf(m meta) int64 {
	v, _, _, _ := common(m)
	return *v
}
