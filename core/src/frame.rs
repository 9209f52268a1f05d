//! The link frame: how one message (pickle + out-of-band buffers) crosses a byte link.
//!
//! `docs/wire-format.md` is the specification; this module is its one implementation, used by the
//! device (`dmapickle-hal`'s publisher) and the host (`dmapickle-host`'s frame reader) alike.
//!
//! ```text
//! header (24 B) | pickle | descriptor table (12 B each) | body CRC | inline bytes | data CRC
//! ```
//!
//! All integers are little-endian. Every check is CRC-32C ([`crc32c`]): the header has its own CRC
//! so a reader hunting for the next [`SYNC`] word never trusts a length it has not verified.
//!
//! Nothing here panics or allocates; every failure is an [`Error`].

use crate::{Descriptor, EncodeError, Error, Result};

/// The four bytes every frame starts with. `F1 50` is not valid UTF-8, so text logged on the same
/// line (semihosting, `println!` over the UART) never contains a sync word.
pub const SYNC: [u8; 4] = [0xF1, 0x50, 0x4B, 0x05];
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the fixed frame header, its CRC included.
pub const HEADER_LEN: usize = 24;
/// Length of one descriptor table entry.
pub const ENTRY_LEN: usize = 12;
/// Length of each CRC field.
pub const CRC_LEN: usize = 4;
/// The smallest frame: header, empty body, body CRC and data CRC.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + 2 * CRC_LEN;

/// Header flag: the device (re)started its sequence counter with this frame, so a jump in `seq`
/// is not a loss.
pub const FLAG_SEQ_RESTART: u8 = 0x01;
/// Header flag: the data CRC field is zero and does not cover the inline bytes, for links that
/// already check their payload (TCP, USB bulk, PCIe). Readers refuse such frames unless told
/// to trust the link; header and body CRCs are always present.
pub const FLAG_NO_DATA_CRC: u8 = 0x02;
/// Every header flag version 1 defines; any other bit set is [`Error::UnknownFrameFlags`].
pub const KNOWN_FLAGS: u8 = FLAG_SEQ_RESTART | FLAG_NO_DATA_CRC;

/// Entry flag: Python must see the buffer read-only.
pub const ENTRY_READONLY: u8 = 0x01;
/// Entry flag: the bytes stay in a shared region (set) or follow the frame inline (clear).
pub const ENTRY_SHARED: u8 = 0x02;
/// Every entry flag version 1 defines.
pub const KNOWN_ENTRY_FLAGS: u8 = ENTRY_READONLY | ENTRY_SHARED;

/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), computed incrementally.
///
/// ```
/// use dmapickle_core::frame::Crc32c;
/// let mut crc = Crc32c::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.finish(), 0xE306_9283); // the standard check value
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32c(u32);

/// The byte-wise table: the CRC register's step for byte `i` (`crc_slices()[0]`).
const CRC_TABLE: [u32; 256] = crc_slices()[0];
/// `crc_slices()[1..]`, only in a build that uses [`sliced`]: a constant of its own, so the
/// byte-wise build links 1 KiB of table, not 4.
#[cfg_attr(not(any(feature = "fast-crc", test)), allow(dead_code))]
const CRC_MORE_SLICES: [[u32; 256]; 3] = {
    let t = crc_slices();
    [t[1], t[2], t[3]]
};

/// Slice `k`, entry `i`: the CRC of byte `i` followed by `k` zero bytes, so four lookups, one
/// per slice, advance the CRC by a whole little-endian word. Evaluated at compile time: an
/// out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
const fn crc_slices() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Entry `i & 0xFF` of slice `k` (a constant at every call); `i` is masked, so the lookup
/// cannot miss.
#[inline(always)]
fn slice(k: usize, i: u32) -> u32 {
    let i = (i & 0xFF) as usize;
    match k.checked_sub(1) {
        None => CRC_TABLE.get(i),
        Some(k) => CRC_MORE_SLICES.get(k).and_then(|t| t.get(i)),
    }
    .copied()
    .unwrap_or(0)
}

/// The CRC register `c` advanced over `bytes`, one byte and one table lookup at a time
/// (1 KiB of table).
fn bytewise(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = (c >> 8) ^ slice(0, c ^ u32::from(b));
    }
    c
}

/// The CRC register `c` advanced over `bytes` four at a time ("slicing by 4": 4 KiB of
/// tables, about half the instructions per byte of [`bytewise`] on a Cortex-M4).
#[cfg_attr(not(any(feature = "fast-crc", test)), allow(dead_code))]
fn sliced(mut c: u32, bytes: &[u8]) -> u32 {
    let (words, tail) = bytes.as_chunks::<4>();
    for w in words {
        let x = c ^ u32::from_le_bytes(*w);
        c = slice(3, x) ^ slice(2, x >> 8) ^ slice(1, x >> 16) ^ slice(0, x >> 24);
    }
    bytewise(c, tail)
}

impl Crc32c {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32c(0xFFFF_FFFF)
    }

    /// Continue the CRC over `bytes`: byte-wise from a 1 KiB table, or, with the `fast-crc`
    /// feature, four bytes at a time from 4 KiB of tables (same result).
    pub fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "fast-crc")]
        {
            self.0 = sliced(self.0, bytes);
        }
        #[cfg(not(feature = "fast-crc"))]
        {
            self.0 = bytewise(self.0, bytes);
        }
    }

    /// The CRC of every byte given so far.
    pub const fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32C of `bytes` in one call.
///
/// ```
/// assert_eq!(dmapickle_core::frame::crc32c(b""), 0);
/// assert_eq!(dmapickle_core::frame::crc32c(b"123456789"), 0xE306_9283);
/// ```
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(bytes);
    crc.finish()
}

fn le32(b: [u8; 4]) -> u32 {
    u32::from_le_bytes(b)
}

/// The fixed 24-byte frame header.
///
/// ```
/// use dmapickle_core::frame::{Header, FLAG_SEQ_RESTART};
/// let h = Header { flags: FLAG_SEQ_RESTART, buffers: 0, seq: 0, pickle_len: 5, inline_len: 0 };
/// let bytes = h.encode();
/// assert_eq!(bytes, [
///     0xF1, 0x50, 0x4B, 0x05, // sync
///     0x01, 0x01, 0x00, 0x00, // version 1, flags SEQ_RESTART, 0 buffers
///     0x00, 0x00, 0x00, 0x00, // seq 0
///     0x05, 0x00, 0x00, 0x00, // pickle_len 5
///     0x00, 0x00, 0x00, 0x00, // inline_len 0
///     0x04, 0xBE, 0x39, 0x22, // header CRC-32C of the 20 bytes above
/// ]);
/// assert_eq!(Header::decode(&bytes), Ok(h));
/// assert_eq!(h.frame_len(), 24 + 5 + 4 + 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Header flags ([`FLAG_SEQ_RESTART`]).
    pub flags: u8,
    /// Number of descriptor table entries (out-of-band buffers of the pickle).
    pub buffers: u16,
    /// Sequence number, wrapping at 2^32.
    pub seq: u32,
    /// Length of the pickle in bytes.
    pub pickle_len: u32,
    /// Total length of the inline buffers that follow the body.
    pub inline_len: u32,
}

impl Header {
    /// The header's bytes, sync word and CRC included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let [s0, s1, s2, s3] = SYNC;
        let [b0, b1] = self.buffers.to_le_bytes();
        let [q0, q1, q2, q3] = self.seq.to_le_bytes();
        let [p0, p1, p2, p3] = self.pickle_len.to_le_bytes();
        let [i0, i1, i2, i3] = self.inline_len.to_le_bytes();
        let head = [
            s0, s1, s2, s3, VERSION, self.flags, b0, b1, q0, q1, q2, q3, p0, p1, p2, p3, i0, i1,
            i2, i3,
        ];
        let [c0, c1, c2, c3] = crc32c(&head).to_le_bytes();
        for (o, b) in out
            .iter_mut()
            .zip(head.iter().chain([c0, c1, c2, c3].iter()))
        {
            *o = *b;
        }
        out
    }

    /// Parse and check a header: sync word, then CRC, then version, then flags.
    ///
    /// Every future version keeps the sync word, the version byte at offset 4 and the CRC over
    /// bytes 0..20 at offset 20, so an unknown version is reported as
    /// [`Error::UnsupportedVersion`] only when its CRC proves the bytes are a real header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self> {
        Self::decode_with(bytes, crc32c)
    }

    /// [`Header::decode`] with the CRC-32C computed by `crc` (e.g. a hardware CRC unit, or the
    /// host's SSE 4.2 implementation); `crc` must return the CRC-32C of the bytes it is given.
    #[inline]
    pub fn decode_with(bytes: &[u8; HEADER_LEN], crc: impl Fn(&[u8]) -> u32) -> Result<Self> {
        let [s0, s1, s2, s3, version, flags, b0, b1, q0, q1, q2, q3, p0, p1, p2, p3, i0, i1, i2, i3, c0, c1, c2, c3] =
            *bytes;
        if [s0, s1, s2, s3] != SYNC {
            return Err(Error::FrameSync);
        }
        // The CRC of the header's first 20 bytes in place (no copy of them).
        let Some(head) = bytes.first_chunk::<{ HEADER_LEN - CRC_LEN }>() else {
            return Err(Error::FrameLength);
        };
        if crc(head) != le32([c0, c1, c2, c3]) {
            return Err(Error::HeaderCrc);
        }
        if version != VERSION {
            return Err(Error::UnsupportedVersion { found: version });
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Error::UnknownFrameFlags { flags });
        }
        Ok(Header {
            flags,
            buffers: u16::from_le_bytes([b0, b1]),
            seq: le32([q0, q1, q2, q3]),
            pickle_len: le32([p0, p1, p2, p3]),
            inline_len: le32([i0, i1, i2, i3]),
        })
    }

    /// Whether the device restarted its sequence counter with this frame.
    pub const fn seq_restart(&self) -> bool {
        self.flags & FLAG_SEQ_RESTART != 0
    }

    /// Whether the data CRC covers the inline bytes (no [`FLAG_NO_DATA_CRC`]).
    pub const fn has_data_crc(&self) -> bool {
        self.flags & FLAG_NO_DATA_CRC == 0
    }

    /// Length of the descriptor table in bytes.
    pub const fn table_len(&self) -> u64 {
        self.buffers as u64 * ENTRY_LEN as u64
    }

    /// Length of the body: pickle, descriptor table and body CRC.
    pub const fn body_len(&self) -> u64 {
        self.pickle_len as u64 + self.table_len() + CRC_LEN as u64
    }

    /// Length of the whole frame, header to data CRC (at most about 8 GiB, so never overflows).
    pub const fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + self.body_len() + self.inline_len as u64 + CRC_LEN as u64
    }
}

/// Where a buffer's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BufferKind {
    /// The bytes follow the frame on the link, raw, in descriptor order.
    Inline,
    /// The bytes stay at `(region, offset, len)` in a region the host maps; the host releases
    /// them through the region's release ring ([`crate::release`]).
    Shared,
}

/// One descriptor table entry: a [`Descriptor`] and how its bytes travel.
///
/// ```
/// use dmapickle_core::{Descriptor, frame::{BufferKind, Entry}};
/// let e = Entry { descriptor: Descriptor::new(2, 0x40, 16).read_only(), kind: BufferKind::Shared };
/// let bytes = e.encode();
/// assert_eq!(bytes, [0x02, 0x00, 0x03, 0x00, 0x40, 0, 0, 0, 0x10, 0, 0, 0]);
/// assert_eq!(Entry::decode(&bytes), Ok(e));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// Region, offset, length and read-only flag.
    pub descriptor: Descriptor,
    /// Inline or shared.
    pub kind: BufferKind,
}

impl Entry {
    /// An inline entry for `descriptor`.
    pub const fn inline(descriptor: Descriptor) -> Self {
        Entry {
            descriptor,
            kind: BufferKind::Inline,
        }
    }

    /// A shared-region entry for `descriptor`.
    pub const fn shared(descriptor: Descriptor) -> Self {
        Entry {
            descriptor,
            kind: BufferKind::Shared,
        }
    }

    /// The entry's 12 bytes: region (u16), flags (u8), reserved zero (u8), offset (u32), len (u32).
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let d = &self.descriptor;
        let mut flags = 0;
        if d.readonly {
            flags |= ENTRY_READONLY;
        }
        if self.kind == BufferKind::Shared {
            flags |= ENTRY_SHARED;
        }
        let [r0, r1] = d.region.to_le_bytes();
        let [o0, o1, o2, o3] = d.offset.to_le_bytes();
        let [l0, l1, l2, l3] = d.len.to_le_bytes();
        [r0, r1, flags, 0, o0, o1, o2, o3, l0, l1, l2, l3]
    }

    /// Parse an entry; unknown flag bits or a non-zero reserved byte are
    /// [`Error::UnknownEntryFlags`].
    pub fn decode(bytes: &[u8; ENTRY_LEN]) -> Result<Self> {
        let [r0, r1, flags, reserved, o0, o1, o2, o3, l0, l1, l2, l3] = *bytes;
        if flags & !KNOWN_ENTRY_FLAGS != 0 || reserved != 0 {
            return Err(Error::UnknownEntryFlags { flags, reserved });
        }
        let descriptor = Descriptor {
            region: u16::from_le_bytes([r0, r1]),
            offset: le32([o0, o1, o2, o3]),
            len: le32([l0, l1, l2, l3]),
            readonly: flags & ENTRY_READONLY != 0,
        };
        let kind = if flags & ENTRY_SHARED != 0 {
            BufferKind::Shared
        } else {
            BufferKind::Inline
        };
        Ok(Entry { descriptor, kind })
    }
}

/// A frame's checked body: the pickle and the descriptor table, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body<'a> {
    /// The protocol-5 pickle.
    pub pickle: &'a [u8],
    table: &'a [u8],
}

impl<'a> Body<'a> {
    /// Check `body` (exactly [`Header::body_len`] bytes) against its CRC and the header: every
    /// entry must decode and the inline lengths must add up to `header.inline_len`.
    ///
    /// ```
    /// use dmapickle_core::frame::{Body, Header};
    /// let h = Header { flags: 0, buffers: 0, seq: 7, pickle_len: 3, inline_len: 0 };
    /// let body = [0x80, 0x05, 0x2E, 0x6B, 0x1C, 0xAE, 0x3A]; // pickle, CRC-32C
    /// let b = Body::parse(&h, &body).unwrap();
    /// assert_eq!(b.pickle, &[0x80, 0x05, 0x2E]);
    /// assert_eq!(b.len(), 0);
    /// ```
    pub fn parse(header: &Header, body: &'a [u8]) -> Result<Self> {
        Self::parse_with(header, body, crc32c)
    }

    /// [`Body::parse`] with the CRC-32C computed by `crc` (see [`Header::decode_with`]).
    pub fn parse_with(header: &Header, body: &'a [u8], crc: impl Fn(&[u8]) -> u32) -> Result<Self> {
        Self::parse_each_with(header, body, crc, |_| {})
    }

    /// [`Body::parse_with`] that also hands each entry, in table order, to `each` as the one
    /// check of the table decodes it (a reader that needs the entries decodes them once, not a
    /// second time through [`Body::entries`]). On an error `each` may have seen the entries
    /// before the bad one, or all of them (a wrong inline total): discard them.
    ///
    /// ```
    /// use dmapickle_core::{Descriptor, frame::{write_frame, Body, Entry, Header, HEADER_LEN}};
    /// let mut out = [0u8; 96];
    /// let entries = [Entry::inline(Descriptor::new(1, 0, 2)), Entry::shared(Descriptor::new(3, 64, 8))];
    /// let n = write_frame(&mut out, 0, 9, &[0x80, 0x05, 0x2E], &entries, &[&[7, 7]]).unwrap();
    /// let h = Header::decode(out[..HEADER_LEN].try_into().unwrap()).unwrap();
    /// let mut seen = Vec::new();
    /// let body_end = HEADER_LEN + h.body_len() as usize;
    /// let b = Body::parse_each_with(&h, &out[HEADER_LEN..body_end], dmapickle_core::frame::crc32c,
    ///     |e| seen.push(e)).unwrap();
    /// assert_eq!((b.pickle, &seen[..]), (&[0x80, 0x05, 0x2E][..], &entries[..]));
    /// assert!(n > body_end);
    /// ```
    #[inline]
    pub fn parse_each_with(
        header: &Header,
        body: &'a [u8],
        crc: impl Fn(&[u8]) -> u32,
        mut each: impl FnMut(Entry),
    ) -> Result<Self> {
        if body.len() as u64 != header.body_len() {
            return Err(Error::FrameLength);
        }
        let Some((covered, crc_bytes)) = body.split_last_chunk::<CRC_LEN>() else {
            return Err(Error::FrameLength);
        };
        if crc(covered) != le32(*crc_bytes) {
            return Err(Error::BodyCrc);
        }
        let (pickle, table) = covered.split_at(header.pickle_len as usize);
        let mut inline = 0u64;
        for chunk in table.chunks_exact(ENTRY_LEN) {
            let bytes: &[u8; ENTRY_LEN] = chunk.try_into().map_err(|_| Error::FrameLength)?;
            let entry = Entry::decode(bytes)?;
            if entry.kind == BufferKind::Inline {
                inline += u64::from(entry.descriptor.len);
            }
            each(entry);
        }
        if inline != u64::from(header.inline_len) {
            return Err(Error::InlineLength);
        }
        Ok(Body { pickle, table })
    }

    /// Number of descriptor table entries.
    pub fn len(&self) -> usize {
        self.table.len() / ENTRY_LEN
    }

    /// Whether the message has no out-of-band buffers.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The entries in pickle order (the order of the `NEXT_BUFFER` opcodes).
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry>> + 'a {
        self.table.chunks_exact(ENTRY_LEN).map(|c| {
            let e: [u8; ENTRY_LEN] = c.try_into().map_err(|_| Error::FrameLength)?;
            Entry::decode(&e)
        })
    }
}

/// Write one whole frame into `out` and return its length: the reference encoder, for tests,
/// documentation and devices that assemble frames in RAM (a DMA publisher sends the same bytes
/// piece by piece). `inline` holds the bytes of the inline entries, in order.
///
/// ```
/// use dmapickle_core::{Descriptor, frame::{write_frame, Entry}};
/// let mut out = [0u8; 64];
/// let entries = [Entry::inline(Descriptor::new(1, 0x100, 4))];
/// let n = write_frame(&mut out, 0, 1, &[0x80, 0x05, 0x97, 0x2E], &entries, &[&[1, 2, 3, 4]]).unwrap();
/// assert_eq!(n, 24 + 4 + 12 + 4 + 4 + 4);
/// assert_eq!(&out[n - 8..n], &[1, 2, 3, 4, 0xF4, 0x8C, 0x30, 0x29]);
/// ```
pub fn write_frame(
    out: &mut [u8],
    flags: u8,
    seq: u32,
    pickle: &[u8],
    entries: &[Entry],
    inline: &[&[u8]],
) -> Result<usize> {
    let mut inline_len = 0u32;
    let mut inline_entries = 0usize;
    for e in entries.iter().filter(|e| e.kind == BufferKind::Inline) {
        let bytes = inline.get(inline_entries).ok_or(Error::InlineLength)?;
        if bytes.len() != e.descriptor.len as usize {
            return Err(Error::InlineLength);
        }
        inline_len = inline_len
            .checked_add(e.descriptor.len)
            .ok_or(Error::FrameLength)?;
        inline_entries += 1;
    }
    if inline_entries != inline.len() {
        return Err(Error::InlineLength);
    }
    let header = Header {
        flags,
        buffers: u16::try_from(entries.len()).map_err(|_| Error::FrameLength)?,
        seq,
        pickle_len: u32::try_from(pickle.len()).map_err(|_| Error::FrameLength)?,
        inline_len,
    };
    let mut w = Cursor { out, pos: 0 };
    w.put(&header.encode())?;
    let mut crc = Crc32c::new();
    w.put(pickle)?;
    crc.update(pickle);
    for e in entries {
        let bytes = e.encode();
        w.put(&bytes)?;
        crc.update(&bytes);
    }
    w.put(&crc.finish().to_le_bytes())?;
    let mut crc = Crc32c::new();
    let checked = header.has_data_crc();
    for bytes in inline {
        w.put(bytes)?;
        if checked {
            crc.update(bytes);
        }
    }
    let data_crc = if checked { crc.finish() } else { 0 };
    w.put(&data_crc.to_le_bytes())?;
    Ok(w.pos)
}

struct Cursor<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(Error::Encode(EncodeError::BufferFull))?;
        let dst = self
            .out
            .get_mut(self.pos..end)
            .ok_or(Error::Encode(EncodeError::BufferFull))?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliced_crc_is_the_bytewise_crc() {
        // Every length 0..=64 at every start offset 0..4 (so the words are read unaligned as
        // well as aligned), of bytes from a fixed xorshift stream, and the check value.
        let mut x = 0x2545_F491u32;
        let data: [u8; 68] = core::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        });
        for start in 0..4 {
            for len in 0..=64 {
                let b = &data[start..start + len];
                for seed in [0xFFFF_FFFF, 0, 0x1234_5678] {
                    assert_eq!(
                        sliced(seed, b),
                        bytewise(seed, b),
                        "start {start} len {len}"
                    );
                }
            }
        }
        assert_eq!(sliced(0xFFFF_FFFF, b"123456789") ^ 0xFFFF_FFFF, 0xE306_9283);
    }

    #[test]
    fn header_rejects_each_corruption() {
        let h = Header {
            flags: 0,
            buffers: 3,
            seq: 0xFFFF_FFFF,
            pickle_len: 100,
            inline_len: 1 << 20,
        };
        let good = h.encode();
        assert_eq!(Header::decode(&good), Ok(h));
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut bad = good;
                bad[byte] ^= 1 << bit;
                let r = Header::decode(&bad);
                assert!(
                    matches!(r, Err(Error::FrameSync) | Err(Error::HeaderCrc)),
                    "flip {byte}.{bit}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn version_and_flags_are_checked_after_the_crc() {
        let mut b = Header {
            flags: 0x80,
            buffers: 0,
            seq: 0,
            pickle_len: 0,
            inline_len: 0,
        }
        .encode();
        assert_eq!(
            Header::decode(&b),
            Err(Error::UnknownFrameFlags { flags: 0x80 })
        );
        b[4] = 2;
        b[5] = 0;
        let crc = crc32c(&b[..20]).to_le_bytes();
        b[20..].copy_from_slice(&crc);
        assert_eq!(
            Header::decode(&b),
            Err(Error::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn no_data_crc_frames_carry_zero() {
        let mut out = [0u8; 64];
        let entries = [Entry::inline(Descriptor::new(1, 0, 3))];
        let n = write_frame(
            &mut out,
            FLAG_NO_DATA_CRC,
            1,
            b"\x80\x05.",
            &entries,
            &[b"abc"],
        )
        .unwrap();
        assert_eq!(&out[n - 4..n], &[0, 0, 0, 0]);
        let h = Header::decode(out[..24].try_into().unwrap()).unwrap();
        assert!(!h.has_data_crc());
    }

    #[test]
    fn entry_flags_and_body_checks() {
        assert_eq!(
            Entry::decode(&[0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::UnknownEntryFlags {
                flags: 4,
                reserved: 0
            })
        );
        let mut out = [0u8; 128];
        let entries = [
            Entry::inline(Descriptor::new(1, 0, 3)),
            Entry::shared(Descriptor::new(2, 64, 1000)),
        ];
        let n = write_frame(&mut out, 0, 9, b"\x80\x05.", &entries, &[b"abc"]).unwrap();
        let frame = &out[..n];
        let h = Header::decode(frame[..24].try_into().unwrap()).unwrap();
        let body_end = 24 + h.body_len() as usize;
        let body = Body::parse(&h, &frame[24..body_end]).unwrap();
        assert_eq!(body.len(), 2);
        for (got, want) in body.entries().zip(entries.iter()) {
            assert_eq!(got, Ok(*want));
        }
        let mut bad = [0u8; 128];
        let bad = &mut bad[..body_end - 24];
        bad.copy_from_slice(&frame[24..body_end]);
        bad[5] ^= 1;
        assert_eq!(Body::parse(&h, bad), Err(Error::BodyCrc));
        assert_eq!(Body::parse(&h, &bad[1..]), Err(Error::FrameLength));
        // A header whose inline length disagrees with the table is refused.
        let lying = Header { inline_len: 4, ..h };
        assert_eq!(
            Body::parse(&lying, &frame[24..body_end]),
            Err(Error::InlineLength)
        );
        // Too small an output buffer is an error, not a panic.
        assert_eq!(
            write_frame(&mut out[..40], 0, 9, b"\x80\x05.", &entries, &[b"abc"]),
            Err(Error::Encode(EncodeError::BufferFull))
        );
        assert_eq!(
            write_frame(&mut out, 0, 9, b"\x80\x05.", &entries, &[b"ab"]),
            Err(Error::InlineLength)
        );
    }
}
