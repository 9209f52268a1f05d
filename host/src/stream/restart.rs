//! Finding a rebooted device's first frame inside the frame being read, and the sync word.

use dmapickle_core::frame::{HEADER_LEN, SYNC, VERSION};

use super::crc::small_crc;

/// Looks, while a frame is read, for the header of a rebooted device's first frame inside it:
/// sync word, header CRC, version 1 and `SEQ_RESTART`, all 24 bytes within the frame's claimed
/// length and after its first byte. Such a header means the frame was cut off by a reboot, so
/// the reader stops waiting for the rest of its claimed length (`docs/wire-format.md`, "A
/// reboot cuts the frame"). Fed each byte of the frame once, in order, however it arrives.
#[derive(Debug)]
pub(super) struct RestartScan {
    /// Frame-relative offset of the next byte to look at (byte 0 is the frame's own sync).
    fed: u64,
    /// The frame's claimed length: bytes at or after it belong to the next frame.
    limit: u64,
    /// The last bytes looked at (at most 23), for a header split across two pieces.
    carry: Carry,
    /// Bytes read straight into the receive block so far: a stage-relative position `r` after
    /// them is frame-relative `r + direct`.
    pub(super) direct: u64,
    pub(super) found: bool,
}

impl RestartScan {
    pub(super) fn new(limit: u64) -> Self {
        RestartScan {
            fed: 1,
            limit,
            carry: Carry::default(),
            direct: 0,
            found: false,
        }
    }

    /// `bytes` that sit at stage-relative position `rel` (see `direct`); true once found.
    pub(super) fn feed_staged(&mut self, rel: u64, bytes: &[u8]) -> bool {
        self.feed(rel + self.direct, bytes)
    }

    /// `bytes` that sit at frame-relative offset `at`; bytes already looked at, and bytes past
    /// the frame's claimed length, are ignored. True once a header was found.
    pub(super) fn feed(&mut self, at: u64, bytes: &[u8]) -> bool {
        if self.found || at > self.fed {
            return self.found;
        }
        let skip = usize::try_from(self.fed - at).unwrap_or(usize::MAX);
        let room = usize::try_from(self.limit.saturating_sub(self.fed)).unwrap_or(usize::MAX);
        let Some(new) = bytes.get(skip..) else {
            return false;
        };
        let new = &new[..new.len().min(room)];
        if new.is_empty() {
            return false;
        }
        // Headers starting in the carried bytes end in the first 23 new ones.
        let carried = self.carry.len;
        self.carry.extend(&new[..new.len().min(HEADER_LEN - 1)]);
        let joint = (0..carried).any(|i| {
            self.carry
                .bytes()
                .get(i..i + HEADER_LEN)
                .is_some_and(|h| restart_header(h, small_crc))
        });
        let inside = if new.len() < SHORT_SCAN {
            // A searcher's set-up costs more than looking at each first sync byte here.
            memchr::memchr_iter(SYNC[0], new).any(|i| {
                new.get(i..i + HEADER_LEN)
                    .is_some_and(|h| restart_header(h, small_crc))
            })
        } else {
            sync_finder().find_iter(new).any(|i| {
                new.get(i..i + HEADER_LEN)
                    .is_some_and(|h| restart_header(h, small_crc))
            })
        };
        self.found = joint || inside;
        // Keep the last 23 bytes looked at.
        if new.len() >= HEADER_LEN - 1 {
            self.carry.len = 0;
            self.carry.extend(&new[new.len() - (HEADER_LEN - 1)..]);
        } else {
            self.carry.keep_last(HEADER_LEN - 1);
        }
        self.fed += new.len() as u64;
        self.found
    }
}

/// The last bytes a [`RestartScan`] looked at, and the first new ones after them: at most
/// 2 x 23, in place (a scan is made per frame, so it allocates nothing).
#[derive(Debug)]
struct Carry {
    buf: [u8; 2 * HEADER_LEN],
    len: usize,
}

impl Default for Carry {
    fn default() -> Self {
        Carry {
            buf: [0; 2 * HEADER_LEN],
            len: 0,
        }
    }
}

impl Carry {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Appends `b` (at most 23 bytes onto at most 23).
    fn extend(&mut self, b: &[u8]) {
        let end = (self.len + b.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&b[..end - self.len]);
        self.len = end;
    }
    /// Keeps only the last `n` bytes.
    fn keep_last(&mut self, n: usize) {
        let drop = self.len.saturating_sub(n);
        self.buf.copy_within(drop..self.len, 0);
        self.len -= drop;
    }
}

/// Pieces shorter than this are scanned for a restart header byte by byte (`memchr`).
pub(super) const SHORT_SCAN: usize = 512;

/// The searcher for the sync word, built once (building one per frame cost about as much as a
/// tiny frame's CRCs).
pub(super) fn sync_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(&SYNC))
}

/// Whether `b` (24 bytes) is a version-1 header with a valid CRC and `SEQ_RESTART` (`crc`: the
/// CRC-32C).
pub(super) fn restart_header(b: &[u8], crc: impl Fn(&[u8]) -> u32) -> bool {
    let Ok(head) = <&[u8; HEADER_LEN]>::try_from(b) else {
        return false;
    };
    head[..4] == SYNC
        && head[4] == VERSION
        && head[5] & dmapickle_core::frame::FLAG_SEQ_RESTART != 0
        && crc(&head[..20]) == u32::from_le_bytes([head[20], head[21], head[22], head[23]])
}
