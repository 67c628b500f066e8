// Package digest keeps a running hash in a resume record: its state is saved with
// the offset it covers, and a restarted worker goes on hashing from there.
package digest

import (
	"encoding"
	"fmt"
	"hash"
)

// State is h's running state. The standard library's hashes marshal without fail;
// a hash that cannot is a programming error.
func State(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("digest: %T keeps no state: %v", h, err))
	}
	return b
}

// Resume sets h to a state State gave; with no state h stays as it is, at the
// start. A state of another hash, or a damaged one, is an error: the bytes it
// stood for must then be hashed again.
func Resume(h hash.Hash, state []byte) (hash.Hash, error) {
	if len(state) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("saved %T state unreadable: %w", h, err)
	}
	return h, nil
}
