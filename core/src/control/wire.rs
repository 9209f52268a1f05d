//! The control frame: how one command or reply travels on the link.
//!
//! ```text
//! offset   size  field
//! 0        4     sync: F1 50 43 44 ("CD", down: host -> device) or F1 50 43 55 ("CU", up)
//! 4        1     version: 01
//! 5        1     P: payload length, 0 ..= MAX_PAYLOAD
//! 6        4     request id (u32 LE), chosen by the host, echoed by the reply
//! 10       P     payload: the postcard encoding of a Request (down) or Reply (up)
//! 10+P     4     CRC-32C of bytes 0 .. 10+P
//! ```
//!
//! The frame is `14 + P` bytes, at most [`MAX_FRAME`]. A reader trusts nothing before the CRC
//! matched: a length over [`MAX_PAYLOAD`] or a failed CRC skips one byte and hunts again from the
//! next, re-scanning bytes it already held, so a cut-off command never swallows the retry that
//! follows it. Since `P` is at most [`MAX_PAYLOAD`], a garbage length costs at most that many
//! bytes of waiting.

use crate::frame::crc32c;

/// Sync word of a command (host -> device).
pub const SYNC_DOWN: [u8; 4] = [0xF1, 0x50, 0x43, 0x44];
/// Sync word of a reply (device -> host). Differs from the data frame's `F1 50 4B 05` at byte 2.
pub const SYNC_UP: [u8; 4] = [0xF1, 0x50, 0x43, 0x55];
/// The control frame version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// The largest payload (postcard bytes) of a control frame.
pub const MAX_PAYLOAD: usize = 64;
/// The largest control frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + 4;

/// Which way a control frame travels, which picks its sync word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Direction {
    /// Host to device: a command.
    Down,
    /// Device to host: a reply.
    Up,
}

impl Direction {
    /// The sync word of this direction.
    pub const fn sync(self) -> [u8; 4] {
        match self {
            Direction::Down => SYNC_DOWN,
            Direction::Up => SYNC_UP,
        }
    }
}

/// Why a control frame could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// The output buffer is shorter than the frame (`need` bytes).
    BufferFull {
        /// Bytes the frame needs.
        need: usize,
    },
    /// The message does not fit in [`MAX_PAYLOAD`] bytes.
    TooLong,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::BufferFull { need } => write!(f, "control frame needs {need} bytes"),
            FrameError::TooLong => write!(f, "control payload over {MAX_PAYLOAD} bytes"),
        }
    }
}

/// Writes a control frame with `payload` into `out`; returns its length.
///
/// ```
/// use dmapickle_core::control::{encode_frame, Direction};
/// let mut out = [0u8; 16];
/// let n = encode_frame(Direction::Up, 1, &[0x05], &mut out).unwrap();
/// assert_eq!(&out[..n], &[0xf1, 0x50, 0x43, 0x55, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x05,
///                         0xfa, 0x54, 0xb1, 0x4b]);
/// ```
pub fn encode_frame(
    dir: Direction,
    id: u32,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let len = u8::try_from(payload.len())
        .ok()
        .filter(|&p| usize::from(p) <= MAX_PAYLOAD)
        .ok_or(FrameError::TooLong)?;
    let need = HEADER_LEN + payload.len() + 4;
    let frame = out.get_mut(..need).ok_or(FrameError::BufferFull { need })?;
    let [s0, s1, s2, s3] = dir.sync();
    let [i0, i1, i2, i3] = id.to_le_bytes();
    let head = [s0, s1, s2, s3, VERSION, len, i0, i1, i2, i3];
    let (h, rest) = frame.split_at_mut(HEADER_LEN);
    h.copy_from_slice(&head);
    let (body, crc) = rest.split_at_mut(payload.len());
    body.copy_from_slice(payload);
    let sum = {
        let mut c = crate::frame::Crc32c::new();
        c.update(&head);
        c.update(body);
        c.finish()
    };
    crc.copy_from_slice(&sum.to_le_bytes());
    Ok(need)
}

/// Encodes `msg` with postcard into the payload of a frame, then frames it.
fn encode_message<T: serde::Serialize>(
    dir: Direction,
    id: u32,
    msg: &T,
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    let used = postcard::to_slice(msg, &mut payload).map_err(|_| FrameError::TooLong)?;
    encode_frame(dir, id, used, out)
}

/// The frame of command `req` with request id `id` (see the [module docs](super) for its bytes).
pub fn encode_request<'o>(
    id: u32,
    req: &super::Request,
    out: &'o mut [u8],
) -> Result<&'o [u8], FrameError> {
    let n = encode_message(Direction::Down, id, req, out)?;
    Ok(out.get(..n).unwrap_or_default())
}

/// The frame of reply `reply` to request `id`.
///
/// ```
/// use dmapickle_core::control::{encode_reply, Reply};
/// let mut out = [0u8; 32];
/// let frame = encode_reply(7, &Reply::Applied { at_seq: 300 }, &mut out).unwrap();
/// assert_eq!(frame, &[0xf1, 0x50, 0x43, 0x55, 0x01, 0x03, 0x07, 0x00, 0x00, 0x00,
///                     0x01, 0xac, 0x02, 0xfa, 0xa5, 0xb8, 0x56][..]);
/// ```
pub fn encode_reply<'o>(
    id: u32,
    reply: &super::Reply,
    out: &'o mut [u8],
) -> Result<&'o [u8], FrameError> {
    let n = encode_message(Direction::Up, id, reply, out)?;
    Ok(out.get(..n).unwrap_or_default())
}

/// What [`parse`] found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The input is empty or a prefix of a frame that may still complete: read more bytes.
    NeedMore,
    /// The first `n` bytes (at least 1) cannot start a frame: drop them and parse again.
    Skip(usize),
    /// A whole frame whose CRC matched, `len` bytes long.
    Frame {
        /// Its version byte ([`VERSION`], or a newer one the reader may answer with an error).
        version: u8,
        /// Request id.
        id: u32,
        /// The postcard payload.
        payload: &'a [u8],
        /// Bytes the frame takes at the start of the input.
        len: usize,
    },
}

/// Looks for a `dir` control frame at the start of `bytes`.
///
/// Bytes before a possible sync word are [`Parsed::Skip`]ped in one step; a sync word whose
/// length is over [`MAX_PAYLOAD`] or whose CRC fails skips one byte, so the caller re-scans the
/// rest. Never panics, whatever the input.
///
/// ```
/// use dmapickle_core::control::{parse, Direction, Parsed};
/// assert_eq!(parse(Direction::Up, b"log\xf1\x50"), Parsed::Skip(3));
/// assert_eq!(parse(Direction::Up, b"\xf1\x50"), Parsed::NeedMore);
/// assert_eq!(parse(Direction::Up, b"\xf1\x50\x43\x55\x01\xff"), Parsed::Skip(1)); // P > 64
/// ```
pub fn parse(dir: Direction, bytes: &[u8]) -> Parsed<'_> {
    let sync = dir.sync();
    // The first position where a sync word could begin (a full match or a prefix at the end).
    let start = (0..bytes.len()).find(|&i| {
        let tail = bytes.get(i..).unwrap_or_default();
        let n = tail.len().min(4);
        tail.get(..n) == sync.get(..n)
    });
    match start {
        None if bytes.is_empty() => return Parsed::NeedMore,
        None => return Parsed::Skip(bytes.len()),
        Some(0) => {}
        Some(i) => return Parsed::Skip(i),
    }
    let Some(&[_, _, _, _, version, p, i0, i1, i2, i3]) = bytes.first_chunk::<HEADER_LEN>() else {
        return match bytes.get(5) {
            Some(&p) if usize::from(p) > MAX_PAYLOAD => Parsed::Skip(1),
            _ => Parsed::NeedMore,
        };
    };
    let p = usize::from(p);
    if p > MAX_PAYLOAD {
        return Parsed::Skip(1);
    }
    let len = HEADER_LEN + p + 4;
    let Some(frame) = bytes.get(..len) else {
        return Parsed::NeedMore;
    };
    let (covered, crc) = frame.split_at(len - 4);
    if crc32c(covered).to_le_bytes() != crc {
        return Parsed::Skip(1);
    }
    Parsed::Frame {
        version,
        id: u32::from_le_bytes([i0, i1, i2, i3]),
        payload: covered.get(HEADER_LEN..).unwrap_or_default(),
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Reply, Request};

    fn frame(id: u32, req: &Request) -> ([u8; MAX_FRAME], usize) {
        let mut out = [0u8; MAX_FRAME];
        let n = encode_request(id, req, &mut out).unwrap().len();
        (out, n)
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let (f, n) = frame(0x0102_0304, &Request::Ping { host_ns: 1 << 40 });
        for bit in 0..n * 8 {
            let mut bad = f;
            bad[bit / 8] ^= 1 << (bit % 8);
            // Whatever the flipped bit, no frame with this id and payload is found at offset 0.
            assert!(
                !matches!(parse(Direction::Down, &bad[..n]), Parsed::Frame { .. }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn every_truncation_waits_or_skips_never_delivers() {
        let (f, n) = frame(9, &Request::SetBlockRows { rows: 512 });
        for cut in 0..n {
            assert!(matches!(
                parse(Direction::Down, &f[..cut]),
                Parsed::NeedMore | Parsed::Skip(_)
            ));
        }
    }

    #[test]
    fn a_reply_is_not_a_command() {
        let mut out = [0u8; MAX_FRAME];
        let r = encode_reply(1, &Reply::Applied { at_seq: 0 }, &mut out).unwrap();
        assert_eq!(parse(Direction::Down, r), Parsed::Skip(r.len()));
    }

    #[test]
    fn too_long_and_short_buffer() {
        let mut out = [0u8; 8];
        assert_eq!(
            encode_frame(Direction::Down, 0, &[0; 65], &mut [0u8; 128]),
            Err(FrameError::TooLong)
        );
        assert_eq!(
            encode_frame(Direction::Down, 0, &[0; 4], &mut out),
            Err(FrameError::BufferFull { need: 18 })
        );
    }
}
