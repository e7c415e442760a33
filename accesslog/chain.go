package accesslog

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"regexp"
	"strings"
)

// MinChainKeyBytes is the shortest chain key secret accepted.
const MinChainKeyBytes = 32

// KeyRing holds the keys of the keyed hash chain (HMAC-SHA256), by id.
// New batches are keyed with the active key (the last one of the file);
// a batch names its key id in its header, so batches written under an
// older key stay verifiable while that key stays in the ring. Whoever can
// write the store but does not hold the ring cannot recompute the chain.
type KeyRing struct {
	keys   map[string][]byte
	active string
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// ParseKeyRing reads a key ring: one key per line, "<id> <secret>", with
// ids of 1-32 characters [A-Za-z0-9._-] and secrets of at least
// MinChainKeyBytes bytes; blank lines and lines starting with # are
// ignored. The last key is the active one. Errors name the line, never
// the secret.
func ParseKeyRing(b []byte) (*KeyRing, error) {
	k := &KeyRing{keys: map[string][]byte{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, " ")
		secret = strings.TrimSpace(secret)
		switch {
		case !ok || secret == "":
			return nil, fmt.Errorf("chain key ring line %d: want \"<key id> <secret>\"", n)
		case !keyIDPattern.MatchString(id):
			return nil, fmt.Errorf("chain key ring line %d: key id %q: want 1-32 characters of A-Z a-z 0-9 . _ -", n, id)
		case len(secret) < MinChainKeyBytes:
			return nil, fmt.Errorf("chain key ring line %d: key %q: the secret is shorter than %d bytes", n, id, MinChainKeyBytes)
		}
		if _, dup := k.keys[id]; dup {
			return nil, fmt.Errorf("chain key ring line %d: key id %q appears twice", n, id)
		}
		k.keys[id] = []byte(secret)
		k.active = id
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("chain key ring: %w", err)
	}
	if k.active == "" {
		return nil, errors.New("chain key ring: no keys (one \"<key id> <secret>\" per line)")
	}
	return k, nil
}

// Active is the id of the key new batches are keyed with.
func (k *KeyRing) Active() string {
	if k == nil {
		return ""
	}
	return k.active
}

// Has reports whether the ring holds a key with this id.
func (k *KeyRing) Has(id string) bool {
	if k == nil {
		return false
	}
	_, ok := k.keys[id]
	return ok
}

// LogValue keeps the secrets out of logs: only ids are shown.
func (k *KeyRing) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("none")
	}
	return slog.GroupValue(slog.String("active", k.active), slog.Int("keys", len(k.keys)))
}

// chainDomain separates keyed chain hashes from any other use of the key.
const chainDomain = "gatehouse/accesslog/chain/v2\x00"

// BatchHash computes the hash of a chain entry: a data batch (with its
// records) or a prune record (PruneTo set, no records). With h.KeyID empty
// it is the plain SHA-256 chain (ChainHash, plus PruneTo when set);
// otherwise HMAC-SHA256 under that key of the ring, over the key id too.
func BatchHash(keys *KeyRing, h *BatchHeader, recs []Record) (string, error) {
	m, err := chainMAC(keys, h, uint64(len(recs)))
	if err != nil {
		return "", err
	}
	buf := make([]byte, 0, 512)
	for i := range recs {
		buf = recs[i].AppendBinary(buf[:0])
		m.Write(buf)
	}
	return hex.EncodeToString(m.Sum(nil)), nil
}

// batchHashFrames is BatchHash of h.Count records given in
// Record.AppendBinary form, concatenated across frames (Batch.Frames):
// the bytes BatchHash encodes, hashed without encoding them again.
func batchHashFrames(keys *KeyRing, h *BatchHeader, frames [][]byte) (string, error) {
	m, err := chainMAC(keys, h, uint64(h.Count))
	if err != nil {
		return "", err
	}
	for _, f := range frames {
		m.Write(f)
	}
	return hex.EncodeToString(m.Sum(nil)), nil
}

// chainMAC starts the hash of a chain entry of count records: the key
// (when keyed), the previous hash, seq, count and PruneTo.
func chainMAC(keys *KeyRing, h *BatchHeader, count uint64) (hash.Hash, error) {
	prev, err := hex.DecodeString(h.PrevHash)
	if err != nil {
		return nil, fmt.Errorf("chain: previous hash %.16q is not hex", h.PrevHash)
	}
	var m hash.Hash
	if h.KeyID == "" {
		m = sha256.New()
	} else {
		if keys == nil {
			return nil, fmt.Errorf("chain: batch %d is keyed with chain key %q and no key ring was given", h.Seq, h.KeyID)
		}
		secret, ok := keys.keys[h.KeyID]
		if !ok {
			return nil, fmt.Errorf("chain: batch %d is keyed with chain key %q, which is not in the key ring", h.Seq, h.KeyID)
		}
		m = hmac.New(sha256.New, secret)
		m.Write([]byte(chainDomain))
		m.Write([]byte(h.KeyID))
		m.Write([]byte{0})
	}
	m.Write(prev)
	var n [24]byte
	binary.BigEndian.PutUint64(n[:8], h.Seq)
	binary.BigEndian.PutUint64(n[8:16], count)
	m.Write(n[:16])
	if h.KeyID != "" || h.PruneTo != 0 {
		binary.BigEndian.PutUint64(n[16:], h.PruneTo)
		m.Write(n[16:])
	}
	return m, nil
}
