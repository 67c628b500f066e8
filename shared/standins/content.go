package standins

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"io"
)

// Content is a file's bytes made from a seed, so that gigabytes need neither disk
// nor memory and any range can be produced on its own; or, for a file people read
// (a transcript), Text itself.
type Content struct {
	Seed int64
	Size int64
	Text []byte // when set, the bytes; Size must be len(Text)
}

const contentBlock = 64 << 10

// ReadAt fills p with the bytes at off.
func (c Content) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.Size {
		return 0, io.EOF
	}
	if c.Text != nil {
		n := copy(p, c.Text[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	n := 0
	var block [contentBlock]byte
	for n < len(p) && off < c.Size {
		b := off / contentBlock
		c.fill(block[:], b)
		in := off - b*contentBlock
		k := copy(p[n:], block[in:min(int64(contentBlock), c.Size-b*contentBlock)])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fill writes block b: xorshift64* seeded by the seed and block number.
func (c Content) fill(dst []byte, b int64) {
	x := uint64(c.Seed)*0x9E3779B97F4A7C15 ^ uint64(b+1)*0xBF58476D1CE4E5B9
	for i := 0; i+8 <= len(dst); i += 8 {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint64(dst[i:], x*0x2545F4914F6CDD1D)
	}
}

// Reader reads the content from off to the end, one generated block at a time.
func (c Content) Reader(off int64) io.Reader {
	if c.Text != nil {
		return bytes.NewReader(c.Text[min(off, int64(len(c.Text))):])
	}
	return &contentReader{c: c, off: off, block: -1}
}

type contentReader struct {
	c     Content
	off   int64
	block int64
	buf   [contentBlock]byte
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.off >= r.c.Size {
		return 0, io.EOF
	}
	if b := r.off / contentBlock; b != r.block {
		r.c.fill(r.buf[:], b)
		r.block = b
	}
	start := r.block * contentBlock
	end := min(start+contentBlock, r.c.Size)
	n := copy(p, r.buf[r.off-start:end-start])
	r.off += int64(n)
	return n, nil
}

// MD5 is the hex MD5 of the whole content.
func (c Content) MD5() string {
	m := md5.New()
	io.Copy(m, c.Reader(0))
	return hex.EncodeToString(m.Sum(nil))
}
