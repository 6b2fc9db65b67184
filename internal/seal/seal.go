// Package seal seals state a client carries for Warden (session ids, the
// state of a multi-round-trip request), so that any instance sharing the
// server's secret can open it and none trusts what a client could forge
// or read: AES-256-GCM under a key derived from the secret for one
// purpose, encoded as unpadded URL-safe base64 in exactly one spelling.
//
//	box := seal.New(auditSecret, "warden confirmation state v2")
//	token := box.Seal(state)
//	state, ok := box.Open(token) // false: altered, foreign or not a token
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// Box seals and opens tokens for one purpose.
type Box struct {
	aead    cipher.AEAD
	purpose []byte
}

// New returns a box whose key is derived from secret and purpose: boxes
// of different purposes never open each other's tokens.
func New(secret []byte, purpose string) *Box {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &Box{aead: aead, purpose: []byte(purpose)}
}

// Seal encrypts and authenticates plain.
func (b *Box) Seal(plain []byte) string {
	n := b.aead.NonceSize()
	nonce := make([]byte, n, n+len(plain)+b.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(b.aead.Seal(nonce, nonce, plain, b.purpose))
}

// Open returns what token carries, or false if this box did not seal it.
func (b *Box) Open(token string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n {
		return nil, false
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], b.purpose)
	return plain, err == nil
}
