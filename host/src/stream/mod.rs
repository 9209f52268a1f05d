//! The frame reader: messages out of any byte stream (`Read`), with resynchronisation, loss
//! accounting and bounded memory.
//!
//! ```no_run
//! use dmapickle_host::stream::FrameReader;
//! let port = std::net::TcpStream::connect("127.0.0.1:7000")?;
//! let mut reader = FrameReader::new(port);
//! while let Some(msg) = reader.next_message().transpose() {
//!     match msg {
//!         Ok(m) => println!("seq {} pickle {} B, {} buffers", m.seq, m.pickle.len(), m.buffers.len()),
//!         Err(e) if e.is_fatal() => return Err(e.into()),
//!         Err(e) => eprintln!("frame refused: {e}"),
//!     }
//! }
//! println!("{:?}", reader.counters());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How it reads (see `docs/wire-format.md`, "Reading a stream"): headers and bodies are read in
//! chunks into a staging buffer; inline buffers of at least `direct_threshold` bytes are read by
//! the OS straight into their final place in a pooled, 64-byte aligned receive block, so large
//! payloads are never copied after the read. Small frames (receive block of at most 4 KiB) are
//! cut one after another from a shared 64 KiB allocation instead, so they cost no allocation
//! and no lock. When the staging buffer holds many whole frames (tiny frames: hundreds per
//! read), they are checked in one pass and share one such piece of memory: a [`Batch`] hands
//! them out as [`MessageRef`]s that borrow it ([`FrameReader::next_batch`]), and
//! [`FrameReader::next_message`] takes its messages one by one from the same batches. A
//! frame whose body or data CRC fails, that the stream cuts off, or that holds the header of a
//! rebooted device's first frame, is counted corrupt and every byte after its sync word is
//! scanned again, so the good frames it swallowed are still found. A frame whose CRCs all
//! match is consumed whole, whether it is delivered or refused, so nothing inside it is ever
//! read as a frame of its own.

use std::io::{self, IoSliceMut, Read};
use std::ops::Range;
use std::sync::Arc;

use dmapickle_core::frame::{Body, BufferKind, Entry, Header, HEADER_LEN, SYNC};

use crate::data_crc::CrcHelper;
use crate::message::{Buffer, Message};
use crate::region::{RegionError, RegionMap};
use crate::validation::{Checker, Rejection};

mod batch;
mod crc;
mod memory;
mod restart;
#[cfg(test)]
mod tests;

pub use batch::{Batch, BufferRef, Drain, MessageRef};

use crc::small_crc;
use memory::{align, Arena, Pool, RecvBlock, ARENA_MAX};
use restart::RestartScan;

/// Alignment of every buffer in a receive block.
pub const BUFFER_ALIGN: usize = 64;

/// Limits and tuning of a [`FrameReader`]. Each limit is inclusive: a header asking for exactly
/// the limit is accepted, one byte (or buffer) more is [`ReadError::TooLarge`].
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Largest whole frame accepted (header to data CRC, `32 + P + 12N + I`). Default 256 MiB.
    pub max_frame: u64,
    /// Largest pickle accepted. Default 1 MiB.
    pub max_pickle: u32,
    /// Most buffers per message. Default 4096.
    pub max_buffers: u16,
    /// Bytes asked of the source per read while staging headers and bodies. Default 64 KiB.
    pub read_chunk: usize,
    /// Inline buffers with at least this many bytes still to come are read straight into the
    /// receive block. Default 16 KiB.
    pub direct_threshold: usize,
    /// Accept frames with `FLAG_NO_DATA_CRC` (inline bytes not covered by a CRC). Only for links
    /// that check their own payload (TCP, USB bulk, PCIe); default `false`: such frames are
    /// refused with [`ReadError::UncheckedData`].
    pub trust_link: bool,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_frame: 256 << 20,
            max_pickle: 1 << 20,
            max_buffers: 4096,
            read_chunk: 64 << 10,
            direct_threshold: 16 << 10,
            trust_link: false,
        }
    }
}

/// What the reader has seen so far (`docs/wire-format.md`, "Counters", defines each one).
///
/// A frame is *consumed* when its header, body and data CRCs all match (the data CRC field is
/// zero for `NO_DATA_CRC` frames) and no rebooted device's header lies inside it: it is then
/// delivered or refused, whole. At the end of the input every byte read is either part of a
/// consumed frame or counted in `bytes_skipped`, exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames delivered.
    pub frames_ok: u64,
    /// Headers whose sync, CRC, version, flags and limits were good but whose frame was not:
    /// body or data CRC failed, a `NO_DATA_CRC` frame's data CRC field was not zero, the input
    /// ended first, or a `SEQ_RESTART` header started inside it.
    pub corrupt: u64,
    /// Frames missing by sequence gaps between consumed frames (delivered or refused).
    pub lost: u64,
    /// Bytes that are not part of a consumed frame: garbage, headers that failed their CRC or
    /// were refused before their frame was read, the first byte of each corrupt frame.
    pub bytes_skipped: u64,
    /// Consumed frames with `SEQ_RESTART` (device boots).
    pub restarts: u64,
    /// Consumed frames without `SEQ_RESTART` whose `seq` did not move forward (`seq - last`
    /// is 0 or at least 2^31): a backward jump, not counted as a loss.
    pub seq_jumps: u64,
    /// Frames refused, each reported as one [`ReadError`] other than `Io`: a header of an
    /// unknown version, with unknown flags or over a limit (not consumed), or a consumed frame
    /// with a bad descriptor table, without data CRC on an untrusted link, with a shared buffer
    /// that cannot be mapped, or whose pickle the validator refused.
    pub refused: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Inline buffer bytes copied out of the staging buffer (the rest were read by the OS
    /// straight into place). For large buffers this stays near zero: after a frame whose
    /// payload was read directly, the next read asks only for the next header and body.
    pub payload_copied: u64,
}

/// Why a frame was not delivered. Only [`ReadError::Io`] is fatal; after any other error the
/// reader is ready for the next frame.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// The source failed.
    Io(io::Error),
    /// A header with a valid CRC that this reader refuses (unknown version or flags), or a body
    /// with a valid CRC whose table is malformed.
    Frame {
        /// Stream offset of the header.
        offset: u64,
        /// What was wrong.
        error: dmapickle_core::Error,
    },
    /// A header asks for more than the reader's limits allow; nothing was allocated.
    TooLarge {
        /// Stream offset of the header.
        offset: u64,
        /// What the header asks for.
        header: Header,
    },
    /// A frame without a data CRC (`FLAG_NO_DATA_CRC`) on a reader that does not trust its link
    /// ([`ReaderConfig::trust_link`]).
    UncheckedData {
        /// Stream offset of the header.
        offset: u64,
    },
    /// A shared buffer could not be mapped.
    Region {
        /// Stream offset of the header.
        offset: u64,
        /// The frame's sequence number.
        seq: u32,
        /// Why.
        error: RegionError,
    },
    /// The validator refused the pickle.
    Invalid {
        /// Stream offset of the header.
        offset: u64,
        /// The frame's sequence number.
        seq: u32,
        /// Why, as data: the offset in the pickle, the opcode, the reason and (for a bound)
        /// the limit.
        rejected: Rejection,
    },
}

impl ReadError {
    /// Whether the reader cannot go on (the source failed).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ReadError::Io(_))
    }

    /// The refusal's name in `docs/wire-format.md` ("Reading a stream"): `UnsupportedVersion`,
    /// `UnknownFrameFlags`, `TooLarge`, `UnknownEntryFlags`, `InlineLength`, `UncheckedData`,
    /// `Region`, `Invalid`; `Io` for a failed source.
    pub fn kind(&self) -> &'static str {
        use dmapickle_core::Error as E;
        match self {
            ReadError::Io(_) => "Io",
            ReadError::Frame { error, .. } => match error {
                E::UnsupportedVersion { .. } => "UnsupportedVersion",
                E::UnknownFrameFlags { .. } => "UnknownFrameFlags",
                E::UnknownEntryFlags { .. } => "UnknownEntryFlags",
                E::InlineLength => "InlineLength",
                _ => "Frame",
            },
            ReadError::TooLarge { .. } => "TooLarge",
            ReadError::UncheckedData { .. } => "UncheckedData",
            ReadError::Region { .. } => "Region",
            ReadError::Invalid { .. } => "Invalid",
        }
    }

    /// For [`ReadError::Invalid`]: why the validator refused the pickle, as data (its offset in
    /// the pickle, opcode, reason and, for a bound, the limit).
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            ReadError::Invalid { rejected, .. } => Some(rejected),
            _ => None,
        }
    }

    /// Stream offset of the refused frame's header (`None` for `Io`).
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Io(_) => None,
            ReadError::Frame { offset, .. }
            | ReadError::TooLarge { offset, .. }
            | ReadError::UncheckedData { offset }
            | ReadError::Region { offset, .. }
            | ReadError::Invalid { offset, .. } => Some(*offset),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the stream: {e}"),
            ReadError::Frame { offset, error } => write!(f, "frame at byte {offset}: {error}"),
            ReadError::TooLarge { offset, header } => write!(
                f,
                "frame at byte {offset} exceeds the reader's limits: {} bytes, pickle {} bytes, {} buffers",
                header.frame_len(),
                header.pickle_len,
                header.buffers
            ),
            ReadError::UncheckedData { offset } => write!(
                f,
                "frame at byte {offset} has no data CRC and the link is not trusted (--trust-link, trust_link=True, ReaderConfig::trust_link)"
            ),
            ReadError::Region { offset, seq, error } => {
                write!(f, "frame {seq} at byte {offset}: {error}")
            }
            ReadError::Invalid {
                offset,
                seq,
                rejected,
            } => write!(f, "frame {seq} at byte {offset}: pickle refused: {rejected}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Nanoseconds of the host's monotonic clock (`CLOCK_MONOTONIC`, the clock of Python's
/// `time.monotonic_ns()` on Linux): what [`Message::host_ns`] is measured in.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists, so the call
    // cannot fail, and on failure `ts` would stay zero (a valid value).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Reassembles [`Message`]s from a byte stream. See the [module docs](self).
pub struct FrameReader<R> {
    src: R,
    cfg: ReaderConfig,
    regions: RegionMap,
    checker: Option<Checker>,
    stage: Vec<u8>,
    pos: usize,
    len: usize,
    /// Stream offset of `stage[pos]`.
    offset: u64,
    last_seq: Option<u32>,
    counters: Counters,
    pool: Arc<Pool>,
    /// Size of the next staging read (one read only), set after a direct payload read so the
    /// read stops at the next frame's payload instead of copying its first chunk.
    read_hint: Option<usize>,
    /// While a frame is read: the search for a rebooted device's header inside it.
    scan: Option<RestartScan>,
    /// [`monotonic_ns`] when the latest read from the source returned: a message's `host_ns`.
    last_read_ns: u64,
    /// The thread that checks the data CRC of large payloads, and from what size it does.
    crc_helper: CrcHelper,
    crc_helper_min: usize,
    /// Sees every byte skipped while hunting (control replies travel there).
    skip_tap: Option<SkipTap>,
    /// Receive memory of small frames, many per allocation.
    arena: Arena,
    /// The per-frame tables, reused from frame to frame so a frame allocates none of them.
    scratch: Scratch,
    /// The batch [`next_message`](Self::next_message) takes its messages from.
    queue: Batch,
    /// A fatal error met while filling `queue`, returned once the outcomes before it are out.
    deferred: Option<ReadError>,
    /// Whether staged frames go through the batch pass (tests turn it off to compare with the
    /// general path alone).
    batch_pass: bool,
}

/// Most outcomes [`FrameReader::next_message`] checks ahead (frames already staged only).
const QUEUE_MAX: usize = 256;

/// Whether a header asks for no more than the reader's limits allow (each one inclusive).
fn within_limits(cfg: &ReaderConfig, h: &Header) -> bool {
    h.frame_len() <= cfg.max_frame && h.pickle_len <= cfg.max_pickle && h.buffers <= cfg.max_buffers
}

/// Sequence accounting of a consumed frame (`docs/wire-format.md`, "Sequence numbers").
#[inline]
fn account_seq(
    counters: &mut Counters,
    last_seq: &mut Option<u32>,
    regions: &RegionMap,
    h: &Header,
) {
    if h.seq_restart() {
        counters.restarts += 1;
        regions.restart();
    } else if let Some(last) = *last_seq {
        let k = h.seq.wrapping_sub(last);
        if k == 0 || k >= 1 << 31 {
            counters.seq_jumps += 1;
        } else {
            counters.lost += u64::from(k - 1);
        }
    }
    *last_seq = Some(h.seq);
}

/// A frame's working lists, kept by the reader between frames (cleared, capacity kept).
#[derive(Debug, Default)]
struct Scratch {
    /// The descriptor table.
    entries: Vec<Entry>,
    /// Where each entry's inline bytes go in the receive block (`None`: shared).
    ranges: Vec<Option<Range<usize>>>,
    /// The receive block's ranges filled from the stream, in order.
    reads: Vec<Range<usize>>,
    /// Bytes read straight into the block: (stage-relative position, block range).
    direct: Vec<(usize, Range<usize>)>,
    /// The buffers' lengths, for the validator.
    lens: Vec<usize>,
}

impl Scratch {
    fn clear(&mut self) {
        self.entries.clear();
        self.ranges.clear();
        self.reads.clear();
        self.direct.clear();
        self.lens.clear();
    }
}

/// Direct payload reads of at least this many bytes have their data CRC folded on a helper
/// thread while the next piece is read (if the machine has a second core).
pub const CRC_HELPER_MIN: usize = 512 << 10;

/// The size from which the data CRC goes to the helper thread: `DMAPICKLE_CRC_HELPER_MIN`
/// (bytes, or `never`), else [`CRC_HELPER_MIN`] if there is a second core, else never.
fn crc_helper_min_from_env() -> usize {
    let auto = if CrcHelper::available() {
        CRC_HELPER_MIN
    } else {
        usize::MAX
    };
    match std::env::var("DMAPICKLE_CRC_HELPER_MIN") {
        Ok(v) if v.trim() == "never" => usize::MAX,
        Ok(v) => v.trim().parse().unwrap_or(auto),
        Err(_) => auto,
    }
}

/// Where a direct read lands: the payload, and the data CRC of what landed.
trait Landing {
    /// The payload not read yet.
    fn unread(&mut self) -> &mut [u8];
    /// `n` more bytes landed at the start of [`unread`](Self::unread).
    fn landed(&mut self, n: usize);
    /// Bytes that landed.
    fn bytes(&self, range: Range<usize>) -> &[u8];
}

/// A payload whose CRC is folded on the reading thread, piece by piece while in cache.
struct Here<'d> {
    dst: &'d mut [u8],
    read: usize,
    crc: Option<u32>,
}

impl Landing for Here<'_> {
    fn unread(&mut self) -> &mut [u8] {
        &mut self.dst[self.read..]
    }
    fn landed(&mut self, n: usize) {
        if let Some(crc) = self.crc.as_mut() {
            *crc = crate::data_crc::append(*crc, &self.dst[self.read..self.read + n]);
        }
        self.read += n;
    }
    fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.dst[range]
    }
}

impl Landing for crate::data_crc::Frame<'_> {
    fn unread(&mut self) -> &mut [u8] {
        crate::data_crc::Frame::unread(self)
    }
    fn landed(&mut self, n: usize) {
        self.read(n)
    }
    fn bytes(&self, range: Range<usize>) -> &[u8] {
        crate::data_crc::Frame::bytes(self, range)
    }
}

/// Receives the bytes a [`FrameReader`] skips while hunting, in stream order.
pub type SkipTap = Box<dyn FnMut(&[u8]) + Send>;

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("cfg", &self.cfg)
            .field("offset", &self.offset)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

enum Step {
    Deliver(Message),
    Refuse(ReadError),
    /// Corrupt or cut off: already pushed back for rescanning.
    Retry,
}

impl<R: Read> FrameReader<R> {
    /// A reader with default limits, no shared regions and no validator.
    pub fn new(src: R) -> Self {
        Self::with_config(src, ReaderConfig::default())
    }

    /// A reader with `cfg`.
    pub fn with_config(src: R, cfg: ReaderConfig) -> Self {
        let chunk = cfg.read_chunk.max(HEADER_LEN);
        FrameReader {
            src,
            cfg: ReaderConfig {
                read_chunk: chunk,
                ..cfg
            },
            regions: RegionMap::new(),
            checker: None,
            stage: vec![0; chunk],
            pos: 0,
            len: 0,
            offset: 0,
            last_seq: None,
            counters: Counters::default(),
            pool: Arc::new(Pool::default()),
            read_hint: None,
            scan: None,
            last_read_ns: 0,
            crc_helper: CrcHelper::default(),
            crc_helper_min: crc_helper_min_from_env(),
            skip_tap: None,
            arena: Arena::default(),
            scratch: Scratch::default(),
            queue: Batch::default(),
            deferred: None,
            batch_pass: true,
        }
    }

    /// Fold the data CRC of direct payload reads of at least `min` bytes on a helper thread
    /// (`usize::MAX`: never, always on the reading thread). The default is [`CRC_HELPER_MIN`]
    /// on a machine with a second core, or `DMAPICKLE_CRC_HELPER_MIN` (bytes, or `never`).
    pub fn with_crc_helper_min(mut self, min: usize) -> Self {
        self.crc_helper_min = min;
        self
    }

    /// Hand every byte skipped while hunting for a frame to `tap`, in stream order: how the
    /// control client finds the device's replies between data frames
    /// (`dmapickle_host::control`).
    pub fn with_skip_tap(mut self, tap: SkipTap) -> Self {
        self.skip_tap = Some(tap);
        self
    }

    /// Resolve shared descriptors against `regions`.
    pub fn with_regions(mut self, regions: RegionMap) -> Self {
        self.regions = regions;
        self
    }

    /// Check every pickle with `checker` (its profile, allowlist and limits, e.g.
    /// `Checker::new(Profile::Strict)` for what the device encoder writes) against the lengths
    /// of the buffers that came with it; a refused pickle is a [`ReadError::Invalid`]. One
    /// checker per stream: its workspace is allocated once and each message costs only what its
    /// own pickle uses.
    pub fn with_checker(mut self, checker: Checker) -> Self {
        self.checker = Some(checker);
        self
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The shared regions.
    pub fn regions(&self) -> &RegionMap {
        &self.regions
    }

    /// The source.
    pub fn get_ref(&self) -> &R {
        &self.src
    }

    /// The next message; `Ok(None)` at the end of the stream (trailing bytes that hold no frame
    /// are counted skipped, a trailing cut-off frame corrupt).
    ///
    /// It takes the messages of a [`Batch`] one by one: after reading what the next outcome
    /// needs it checks, without reading more, the frames already staged behind it (at most
    /// 256), so [`counters`](Self::counters) may count frames this call has not returned yet.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        if let Some(m) = self.queue.pop_staged() {
            return Ok(Some(m));
        }
        if self.queue.is_empty() {
            if let Some(e) = self.deferred.take() {
                return Err(e);
            }
            let mut queue = std::mem::take(&mut self.queue);
            queue.clear();
            let filled = self.fill(&mut queue, QUEUE_MAX, false);
            self.queue = queue;
            match filled {
                Err(e) if self.queue.is_empty() => return Err(e),
                Err(e) => self.deferred = Some(e),
                Ok(_) => {}
            }
        }
        match self.queue.pop_front() {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// A batch: replaces `out`'s contents with the outcome of each frame (a message, or a
    /// non-fatal refusal, each counted as by [`next_message`](Self::next_message)) up to `max`
    /// of them, reading from the source only until the first outcome is in, then going on only
    /// while the staged bytes already hold a whole next frame, so a batch never waits for the
    /// link once it has something. With tiny frames one read brings hundreds, checked in one
    /// pass and handed out as views of one shared block ([`MessageRef`]): no allocation and no
    /// reference count per message; the caller pays its per-batch costs (a lock, a wake-up, a
    /// native call) once for all of them. Reuse `out` from call to call.
    ///
    /// Returns `Ok(false)` once the stream has ended (what it held is in `out`); a fatal error
    /// is returned as is, after the outcomes put in `out` before it.
    pub fn next_batch(&mut self, out: &mut Batch, max: usize) -> Result<bool, ReadError> {
        out.clear();
        if !self.queue.is_empty() {
            // What `next_message` checked ahead comes first.
            while out.len() < max.max(1) {
                match self.queue.pop_front() {
                    Some(outcome) => out.push_other(outcome),
                    None => break,
                }
            }
            return Ok(true);
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        self.fill(out, max, true)
    }

    /// Append up to `max` outcomes to `out` (see [`next_batch`](Self::next_batch)): staged
    /// frames through the batch pass ([`take_staged`](Self::take_staged)), every other frame
    /// through the general path ([`next_frame`](Self::next_frame)), which may read. Once `out`
    /// holds an outcome, the general path runs only if `ahead` and a whole frame is staged.
    fn fill(&mut self, out: &mut Batch, max: usize, ahead: bool) -> Result<bool, ReadError> {
        let max = max.max(1);
        if !self.regions.is_empty() {
            self.regions.flush();
        }
        loop {
            match self.take_staged(out, max) {
                batch::Stop::Full => return Ok(true),
                batch::Stop::Room => continue,
                batch::Stop::General => {}
            }
            let more_staged = ahead && self.frame_staged();
            if !out.is_empty() && !more_staged {
                return Ok(true);
            }
            match self.next_frame() {
                Ok(Some(m)) => out.push_other(Ok(m)),
                Ok(None) => return Ok(false),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => out.push_other(Err(e)),
            }
        }
    }

    /// The general path: the next frame's outcome, whatever it takes (hunting, reads, direct
    /// payload reads, resynchronisation); `Ok(None)` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<Message>, ReadError> {
        if !self.regions.is_empty() {
            self.regions.flush();
        }
        loop {
            if !self.hunt()? {
                return Ok(None);
            }
            let at = self.offset;
            let head: [u8; HEADER_LEN] = self
                .stage
                .get(self.pos..self.pos + HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| io::Error::other("staging invariant"))?;
            // Checks in the order of docs/wire-format.md, "Reading a stream".
            let header = match Header::decode_with(&head, small_crc) {
                Ok(h) => h,
                Err(dmapickle_core::Error::HeaderCrc) | Err(dmapickle_core::Error::FrameSync) => {
                    self.skip_hunting(1);
                    continue;
                }
                Err(error) => {
                    self.skip_hunting(1);
                    self.counters.refused += 1;
                    return Err(ReadError::Frame { offset: at, error });
                }
            };
            if !within_limits(&self.cfg, &header) {
                self.skip_hunting(1);
                self.counters.refused += 1;
                return Err(ReadError::TooLarge { offset: at, header });
            }
            match self.read_frame(&header, at)? {
                Step::Deliver(m) => {
                    self.counters.frames_ok += 1;
                    return Ok(Some(m));
                }
                Step::Refuse(e) => {
                    self.counters.refused += 1;
                    return Err(e);
                }
                Step::Retry => self.counters.corrupt += 1,
            }
        }
    }

    /// Whether a header with a valid CRC starts the staged bytes and its whole frame is staged
    /// behind it (so reading it needs no read from the source).
    fn frame_staged(&self) -> bool {
        let Some(head) = self
            .stage
            .get(self.pos..self.pos + HEADER_LEN)
            .and_then(|s| <&[u8; HEADER_LEN]>::try_from(s).ok())
        else {
            return false;
        };
        matches!(Header::decode_with(head, small_crc),
            Ok(h) if h.frame_len() <= (self.len - self.pos) as u64)
    }

    /// Skip to the next sync word with a full header behind it; `false` at the end of input.
    fn hunt(&mut self) -> Result<bool, ReadError> {
        loop {
            let avail = &self.stage[self.pos..self.len];
            if let Some(i) = avail.windows(SYNC.len()).position(|w| w == SYNC) {
                self.skip_hunting(i);
                if self.fill_to(HEADER_LEN)? {
                    return Ok(true);
                }
                // The stream ends inside a header.
                self.skip_hunting(self.len - self.pos);
                return Ok(false);
            }
            // Keep a possible partial sync word at the end (only bytes that are one, so a
            // control reply's last bytes reach the skip tap without waiting for more input).
            let keep = (1..SYNC.len())
                .rev()
                .find(|&k| avail.ends_with(&SYNC[..k]))
                .unwrap_or(0);
            self.skip_hunting(avail.len() - keep);
            if !self.fill_to(keep + 1)? {
                self.skip_hunting(self.len - self.pos);
                return Ok(false);
            }
        }
    }

    fn skip_hunting(&mut self, n: usize) {
        if let (Some(tap), Some(bytes)) =
            (&mut self.skip_tap, self.stage.get(self.pos..self.pos + n))
        {
            tap(bytes);
        }
        self.counters.bytes_skipped += n as u64;
        self.skip(n);
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Make at least `n` bytes available at `stage[pos..]`; `false` if the stream ends first.
    fn fill_to(&mut self, n: usize) -> Result<bool, ReadError> {
        while self.len - self.pos < n {
            if self.stage.len() - self.pos < n + self.cfg.read_chunk / 2 {
                // Compact, then grow if needed (bounded: n <= max frame).
                self.stage.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
                let want = n.max(self.cfg.read_chunk) + self.cfg.read_chunk / 2;
                if self.stage.len() < want {
                    self.stage.resize(want, 0);
                }
            }
            let room = self.stage.len() - self.len;
            let want = match self.read_hint.take() {
                Some(hint) => hint.max(n - (self.len - self.pos)).min(room),
                None => room,
            };
            let got = match self.src.read(&mut self.stage[self.len..self.len + want]) {
                Ok(0) => return Ok(false),
                Ok(k) => {
                    self.last_read_ns = monotonic_ns();
                    k
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let rel = (self.len - self.pos) as u64;
            self.len += got;
            self.counters.bytes_read += got as u64;
            if let Some(scan) = self.scan.as_mut() {
                // A rebooted device's header inside the frame: stop waiting for its length.
                if scan.feed_staged(rel, &self.stage[self.len - got..self.len]) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Read into `dst` straight from the source, folding each piece into `crc`: on a helper
    /// thread while the next piece is read, for payloads of at least [`CRC_HELPER_MIN`] bytes
    /// (when there is a second core), else here while the piece is still in cache. Returns the
    /// bytes read (short at end of input, or when a rebooted device's header shows up inside
    /// the frame). `staged` is the stage-relative position the bytes belong at (the frame's
    /// staged bytes end there).
    ///
    /// The read that completes the payload also asks for up to `tail` bytes more into the
    /// stage (one `read_vectored`): the data CRC and the next frame's header and body arrive
    /// with it instead of in a read of their own. Those bytes are staged at `staged` (where
    /// the bytes after the payload belong) and counted in `bytes_read` here.
    fn read_direct(
        &mut self,
        dst: &mut [u8],
        staged: usize,
        crc: Option<&mut u32>,
        tail: usize,
    ) -> Result<usize, ReadError> {
        let total = dst.len();
        if self.stage.len() - self.len < tail {
            // Room for the tail: the frame's staged bytes move to the front (positions are
            // relative to `pos`, as in `fill_to`).
            self.stage.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        let tail = tail.min(self.stage.len() - self.len);
        let done = match crc {
            Some(crc) if total >= self.crc_helper_min => {
                let mut helper = std::mem::take(&mut self.crc_helper);
                let mut frame = helper.frame(dst, *crc);
                let done = self.read_pieces(&mut frame, total, staged, tail);
                *crc = frame.finish();
                self.crc_helper = helper;
                done?
            }
            crc => {
                let mut here = Here {
                    dst,
                    read: 0,
                    crc: crc.as_deref().copied(),
                };
                let done = self.read_pieces(&mut here, total, staged, tail)?;
                if let (Some(crc), Some(folded)) = (crc, here.crc) {
                    *crc = folded;
                }
                done
            }
        };
        self.counters.bytes_read += done as u64;
        if let Some(scan) = self.scan.as_mut() {
            // Stage-relative positions after these bytes are `done` further into the frame.
            scan.direct += done as u64;
        }
        Ok(done)
    }

    /// The read loop of [`read_direct`](Self::read_direct): up to `total` bytes into `land`,
    /// then up to `tail` into the stage.
    fn read_pieces(
        &mut self,
        land: &mut impl Landing,
        total: usize,
        staged: usize,
        tail: usize,
    ) -> Result<usize, ReadError> {
        let mut done = 0;
        while done < total {
            let read = if tail == 0 {
                self.src.read(land.unread())
            } else {
                let stage = &mut self.stage[self.len..self.len + tail];
                let mut bufs = [IoSliceMut::new(land.unread()), IoSliceMut::new(stage)];
                self.src.read_vectored(&mut bufs)
            };
            match read {
                Ok(0) => break,
                Ok(got) => {
                    self.last_read_ns = monotonic_ns();
                    // The payload's part first: a source fills the buffers in order.
                    let k = got.min(total - done);
                    land.landed(k);
                    let rel = (staged + done) as u64;
                    done += k;
                    // The payload is complete if more came: that is staged (and kept, even
                    // when the scan below stops the frame).
                    let extra = got - k;
                    self.len += extra;
                    self.counters.bytes_read += extra as u64;
                    if let Some(scan) = self.scan.as_mut() {
                        let after = &self.stage[self.len - extra..self.len];
                        if scan.feed_staged(rel, land.bytes(done - k..done))
                            || scan.feed_staged((staged + done) as u64, after)
                        {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Read the frame whose valid header is at `stage[pos]`, watching its bytes for a rebooted
    /// device's header.
    fn read_frame(&mut self, h: &Header, at: u64) -> Result<Step, ReadError> {
        let mut scan = RestartScan::new(h.frame_len());
        scan.feed(0, &self.stage[self.pos..self.len]);
        self.scan = Some(scan);
        let mut scratch = std::mem::take(&mut self.scratch);
        let step = self.read_frame_bytes(h, at, &mut scratch);
        scratch.clear();
        self.scratch = scratch;
        self.scan = None;
        step
    }

    fn restart_inside(&self) -> bool {
        self.scan.as_ref().is_some_and(|s| s.found)
    }

    fn read_frame_bytes(
        &mut self,
        h: &Header,
        at: u64,
        s: &mut Scratch,
    ) -> Result<Step, ReadError> {
        let body_len = h.body_len() as usize;
        if self.restart_inside() || !self.fill_to(HEADER_LEN + body_len)? {
            self.skip_hunting(1);
            return Ok(Step::Retry);
        }
        let body_range = self.pos + HEADER_LEN..self.pos + HEADER_LEN + body_len;
        // A table refused with a matching body CRC is judged once the whole frame has checked.
        let table: Result<(), dmapickle_core::Error> =
            match Body::parse_with(h, &self.stage[body_range.clone()], small_crc) {
                Err(dmapickle_core::Error::BodyCrc) => {
                    self.skip_hunting(1);
                    return Ok(Step::Retry);
                }
                Err(error) => Err(error),
                Ok(body) => body.entries().try_for_each(|e| {
                    s.entries.push(e?);
                    Ok(())
                }),
            };
        // Receive block layout: pickle at 0, each inline buffer at the next aligned offset. For
        // a refused table, the inline bytes in one piece (read for the data CRC, never shown).
        let pickle_len = h.pickle_len as usize;
        let mut size = align(pickle_len);
        match &table {
            Ok(()) => {
                for e in &s.entries {
                    if e.kind == BufferKind::Inline {
                        let n = e.descriptor.len as usize;
                        s.ranges.push(Some(size..size + n));
                        s.reads.push(size..size + n);
                        size = align(size + n);
                    } else {
                        s.ranges.push(None);
                    }
                }
            }
            Err(_) => {
                s.reads.push(size..size + h.inline_len as usize);
                size += h.inline_len as usize;
            }
        }
        let mut block = if size <= ARENA_MAX {
            RecvBlock::Arena(self.arena.take(size))
        } else {
            RecvBlock::Pooled(self.pool.take(size))
        };
        let pickle_at = body_range.start;
        block.as_mut()[..pickle_len]
            .copy_from_slice(&self.stage[pickle_at..pickle_at + pickle_len]);

        // Inline bytes: from staging while it has them, large remainders straight from the source.
        let mut cur = HEADER_LEN + body_len; // relative to pos
        let mut cut_off = false;
        let mut crc = 0u32;
        let checked = h.has_data_crc();
        for r in &s.reads {
            let mut done = 0;
            let need = r.len();
            let staged = (self.len - self.pos - cur).min(need);
            let from = self.pos + cur;
            let staged_bytes = &self.stage[from..from + staged];
            block.as_mut()[r.start..r.start + staged].copy_from_slice(staged_bytes);
            if checked {
                crc = crate::data_crc::append(crc, staged_bytes);
            }
            self.counters.payload_copied += staged as u64;
            cur += staged;
            done += staged;
            if done < need && need - done >= self.cfg.direct_threshold {
                let dst = r.start + done..r.end;
                // After the frame's last payload: its data CRC, the next header and body.
                let last = std::ptr::eq(r, s.reads.last().unwrap_or(r));
                let tail = if last { 4 + HEADER_LEN + body_len } else { 0 };
                let got = self.read_direct(
                    &mut block.as_mut()[dst.clone()],
                    cur,
                    checked.then_some(&mut crc),
                    tail,
                )?;
                s.direct.push((cur, dst.start..dst.start + got));
                if got < dst.len() {
                    cut_off = true;
                    break;
                }
            } else if done < need {
                if !self.fill_to(cur + need - done)? {
                    cut_off = true;
                    break;
                }
                let from = self.pos + cur;
                let k = need - done;
                let staged_bytes = &self.stage[from..from + k];
                block.as_mut()[r.start + done..r.end].copy_from_slice(staged_bytes);
                if checked {
                    crc = crate::data_crc::append(crc, staged_bytes);
                }
                self.counters.payload_copied += k as u64;
                cur += k;
            }
        }
        if !s.direct.is_empty() {
            // Expect the next frame to look like this one: read its data CRC, header and body
            // in one go, and leave its payload for a direct read.
            self.read_hint = Some(4 + HEADER_LEN + body_len);
        }
        let crc_ok = !cut_off && self.fill_to(cur + 4)? && {
            let at = self.pos + cur;
            cur += 4;
            let field = u32::from_le_bytes([
                self.stage[at],
                self.stage[at + 1],
                self.stage[at + 2],
                self.stage[at + 3],
            ]);
            // Without a data CRC the field must be zero: the frame's last check of its length.
            field == if checked { crc } else { 0 }
        };
        if !crc_ok || self.restart_inside() {
            self.push_back(cur, &s.direct, block.as_ref());
            return Ok(Step::Retry);
        }
        let direct_total: usize = s.direct.iter().map(|(_, r)| r.len()).sum();
        self.pos += cur;
        self.offset += (cur + direct_total) as u64;

        // The frame is consumed whole: it counts for the sequence, delivered or refused.
        account_seq(&mut self.counters, &mut self.last_seq, &self.regions, h);
        if let Err(error) = table {
            return Ok(Step::Refuse(ReadError::Frame { offset: at, error }));
        }
        if !checked && !self.cfg.trust_link {
            return Ok(Step::Refuse(ReadError::UncheckedData { offset: at }));
        }

        let whole = block.freeze();
        let pickle = whole.slice(..pickle_len);
        let mut buffers = Vec::with_capacity(s.entries.len());
        for (e, r) in s.entries.iter().zip(&s.ranges) {
            let data = match r {
                Some(r) => whole.slice(r.clone()),
                None => match self.regions.view(&e.descriptor) {
                    Ok(b) => b,
                    Err(error) => {
                        return Ok(Step::Refuse(ReadError::Region {
                            offset: at,
                            seq: h.seq,
                            error,
                        }))
                    }
                },
            };
            buffers.push(Buffer {
                data,
                descriptor: e.descriptor,
                kind: e.kind,
            });
        }
        if let Some(checker) = self.checker.as_mut() {
            s.lens.extend(buffers.iter().map(|b| b.data.len()));
            if let Err(rejected) = checker.check(&pickle, &s.lens) {
                return Ok(Step::Refuse(ReadError::Invalid {
                    offset: at,
                    seq: h.seq,
                    rejected,
                }));
            }
        }
        Ok(Step::Deliver(Message {
            seq: h.seq,
            restart: h.seq_restart(),
            pickle,
            buffers,
            stream_offset: at,
            // The read that brought the data CRC (the frame's last bytes) was the latest one.
            host_ns: self.last_read_ns,
        }))
    }

    /// A frame failed after its header: put every byte consumed after its sync word back in
    /// front of the staging buffer, in stream order, to be scanned again.
    fn push_back(&mut self, staged_end: usize, direct: &[(usize, Range<usize>)], block: &[u8]) {
        let staged_end = staged_end.min(self.len - self.pos);
        let direct_total: usize = direct.iter().map(|(_, r)| r.len()).sum();
        let rest = self.len - self.pos - staged_end;
        let mut v = Vec::with_capacity(self.len - self.pos + direct_total + self.cfg.read_chunk);
        let mut s = 1;
        for (at, r) in direct {
            v.extend_from_slice(&self.stage[self.pos + s..self.pos + at]);
            v.extend_from_slice(&block[r.clone()]);
            s = *at;
        }
        v.extend_from_slice(&self.stage[self.pos + s..self.len]);
        debug_assert_eq!(v.len(), staged_end - 1 + direct_total + rest);
        let n = v.len();
        v.resize(n.max(self.cfg.read_chunk) + self.cfg.read_chunk / 2, 0);
        self.stage = v;
        self.pos = 0;
        self.len = n;
        // The corrupt frame's first byte is not part of any frame; the rest is hunted again.
        self.offset += 1;
        self.counters.bytes_skipped += 1;
    }
}

impl<R: Read> Iterator for FrameReader<R> {
    type Item = Result<Message, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message().transpose()
    }
}
