//! The publisher: one message (pickle + descriptors + buffers) becomes one frame on a link.

use core::cell::Cell;
use core::sync::atomic::{fence, Ordering};
use critical_section::Mutex;
use dmapickle_core::frame::{Crc32c, Entry, Header, FLAG_NO_DATA_CRC, FLAG_SEQ_RESTART};
use dmapickle_core::Descriptor;
use embedded_dma::ReadBuffer;
use heapless::Vec;

use crate::link::{Link, Transfer};
use crate::{Error, SharedBuf};

/// One buffer of a message and how it travels.
#[derive(Debug)]
pub enum Outgoing<'r, B> {
    /// Sent after the frame on the link by DMA; given back when the transfer completes.
    Inline(B),
    /// Left in its shared region and lent to the host until it releases it.
    Shared(SharedBuf<'r>),
}

/// A frame that went out: its sequence number and the inline buffers, given back in order.
#[derive(Debug)]
pub struct Sent<B, const N: usize> {
    /// The frame's sequence number.
    pub seq: u32,
    /// The inline buffers, in message order, free to refill.
    pub inline: Vec<B, N>,
}

/// A frame that did not go out (or went out cut off), with every inline buffer given back.
///
/// Shared buffers given to a frame that failed before any byte was written are freed; once the
/// header is on the link they stay lent (the host may have seen the frame) until released.
#[derive(Debug)]
pub struct PublishError<E, B, const N: usize> {
    /// What went wrong.
    pub error: Error,
    /// The link's own error, when [`Error::Link`].
    pub link: Option<E>,
    /// The inline buffers, in message order.
    pub inline: Vec<B, N>,
}

impl<E, B, const N: usize> PublishError<E, B, N> {
    /// What went wrong, the link's own error (when [`Error::Link`]) and the inline buffers, in
    /// message order, to give back to their ring.
    pub fn into_parts(self) -> (Error, Option<E>, Vec<B, N>) {
        (self.error, self.link, self.inline)
    }
}

/// `publishing failed: <what>` and, for a link error, the link's own error.
impl<E: core::fmt::Debug, B, const N: usize> core::fmt::Display for PublishError<E, B, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "publishing failed: {}", self.error)?;
        match &self.link {
            Some(link) => write!(f, " ({link:?})"),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug, B: core::fmt::Debug, const N: usize> std::error::Error
    for PublishError<E, B, N>
{
}

/// `?` on [`Publisher::publish`] in a function returning [`Error`]: the buffers are dropped
/// with the error (a `DmaBuf` is then gone from its ring). To keep them, match the error and
/// [`PublishError::into_parts`] it instead.
impl<E, B, const N: usize> From<PublishError<E, B, N>> for Error {
    fn from(e: PublishError<E, B, N>) -> Self {
        e.error
    }
}

/// Frames messages and puts them on a link, numbering them with a wrapping sequence counter.
///
/// The counter lives in a `critical_section::Mutex`, so a `static` publisher can be used from
/// the main loop and from interrupt handlers (each with its own link borrow). The first frame
/// carries `SEQ_RESTART`, so the host does not count a boot as lost frames.
///
/// ```
/// # #[cfg(feature = "std")]
/// # fn main() {
/// use dmapickle_core::frame::{Body, Header, HEADER_LEN};
/// use dmapickle_hal::{io::IoLink, Block, DmaBuf, Outgoing, Publisher};
/// let publisher = Publisher::new();
/// let mut link = IoLink::new(Vec::new());
/// static BLOCK: static_cell::ConstStaticCell<Block<16>> = static_cell::ConstStaticCell::new(Block::ZERO);
/// let mut buf = DmaBuf::from_block(1, 0x100, BLOCK.take());
/// buf.fill_from(&[1, 2, 3, 4]).unwrap();
/// let descriptors = [buf.descriptor()];
/// let pickle = [0x80, 0x05, 0x97, 0x2E]; // NEXT_BUFFER: loads as the buffer itself
/// let sent = publisher
///     .publish(&mut link, &pickle, &descriptors, [Outgoing::Inline(buf)])
///     .unwrap();
/// assert_eq!(sent.seq, 0);
/// let frame = link.into_inner();
/// let header = Header::decode(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
/// assert!(header.seq_restart());
/// assert_eq!(&frame[frame.len() - 8..frame.len() - 4], &[1, 2, 3, 4]);
/// # }
/// # #[cfg(not(feature = "std"))]
/// # fn main() {} // the example's link is the `std` feature's `IoLink`
/// ```
#[derive(Debug)]
pub struct Publisher {
    state: Mutex<Cell<(u32, bool)>>,
    data_crc: bool,
}

impl Publisher {
    /// A publisher whose first frame is sequence 0 with `SEQ_RESTART`.
    pub const fn new() -> Self {
        Self::starting_at(0)
    }

    /// A publisher whose first frame is sequence `seq` with `SEQ_RESTART`.
    pub const fn starting_at(seq: u32) -> Self {
        Publisher {
            state: Mutex::new(Cell::new((seq, true))),
            data_crc: true,
        }
    }

    /// The same publisher, but its frames carry `FLAG_NO_DATA_CRC`: the inline bytes are not
    /// read by the CPU at all (no CRC over them), for links that check their own payload (TCP,
    /// USB bulk, PCIe). Header and body CRCs stay. Hosts refuse these frames unless configured
    /// to trust the link.
    pub const fn without_data_crc(self) -> Self {
        Publisher {
            data_crc: false,
            ..self
        }
    }

    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u32 {
        critical_section::with(|cs| self.state.borrow(cs).get().0)
    }

    fn take_seq(&self) -> (u32, u8) {
        critical_section::with(|cs| {
            let cell = self.state.borrow(cs);
            let (seq, restart) = cell.get();
            cell.set((seq.wrapping_add(1), false));
            (seq, if restart { FLAG_SEQ_RESTART } else { 0 })
        })
    }

    /// Publish a message without out-of-band buffers.
    pub fn publish_pickle<L: Link>(&self, link: &mut L, pickle: &[u8]) -> Result<u32, Error> {
        self.publish::<L, &'static [u8], 0>(link, pickle, &[], [])
            .map(|s| s.seq)
            .map_err(|e| e.error)
    }

    /// Frame `pickle` with its `descriptors` (the encoder's output, in `NEXT_BUFFER` order) and
    /// the matching `buffers`, and send it: header, pickle, descriptor table and body CRC with
    /// blocking writes, then each inline buffer by DMA (its CRC folded in first), then the data
    /// CRC.
    ///
    /// Each buffer must match its descriptor: the same length, and for a shared buffer the same
    /// region and offset. Mismatches are refused before anything is written.
    pub fn publish<L, B, const N: usize>(
        &self,
        link: &mut L,
        pickle: &[u8],
        descriptors: &[Descriptor],
        buffers: [Outgoing<'_, B>; N],
    ) -> Result<Sent<B, N>, PublishError<L::Error, B, N>>
    where
        L: Link,
        B: ReadBuffer<Word = u8> + 'static,
    {
        // Cannot overflow: N items into a Vec of capacity N.
        let buffers: Vec<Outgoing<'_, B>, N> = buffers.into_iter().collect();
        self.publish_vec(link, pickle, descriptors, buffers)
    }

    /// [`Publisher::publish`] for a message whose number of buffers is only known at run time
    /// (at most `N`).
    pub fn publish_vec<L, B, const N: usize>(
        &self,
        link: &mut L,
        pickle: &[u8],
        descriptors: &[Descriptor],
        buffers: Vec<Outgoing<'_, B>, N>,
    ) -> Result<Sent<B, N>, PublishError<L::Error, B, N>>
    where
        L: Link,
        B: ReadBuffer<Word = u8> + 'static,
    {
        let Frame {
            header,
            entries,
            inline: pending,
        } = self.prepare(pickle, descriptors, buffers, inline_len)?;
        let mut inline: Vec<B, N> = Vec::new();
        let mut crc = Crc32c::new();
        let mut meta = || -> Result<(), L::Error> {
            link.write(&header.encode())?;
            link.write(pickle)?;
            crc.update(pickle);
            for e in &entries {
                let bytes = e.encode();
                link.write(&bytes)?;
                crc.update(&bytes);
            }
            link.write(&crc.finish().to_le_bytes())
        };
        if let Err(e) = meta() {
            return Err(link_failed(e, inline, pending));
        }
        let mut data_crc = Crc32c::new();
        let mut rest = pending.into_iter();
        while let Some(b) = rest.next() {
            if self.data_crc {
                // SAFETY: `ReadBuffer` promises a valid, initialised `(ptr, len)` while `b`
                // lives and is not written; the slice is dropped before `b` moves into the
                // transfer.
                let bytes = unsafe {
                    let (ptr, len) = b.read_buffer();
                    core::slice::from_raw_parts(ptr, len)
                };
                data_crc.update(bytes);
            }
            let (b, result) = link.transfer(b).wait();
            let _ = inline.push(b);
            if let Err(e) = result {
                return Err(link_failed(e, inline, rest));
            }
        }
        let data_crc = if self.data_crc { data_crc.finish() } else { 0 };
        if let Err(e) = link.write(&data_crc.to_le_bytes()) {
            return Err(link_failed(e, inline, None));
        }
        Ok(Sent {
            seq: header.seq,
            inline,
        })
    }

    /// Whether frames carry a CRC over their inline bytes (see [`Publisher::without_data_crc`]).
    #[cfg(feature = "async")]
    pub(crate) fn data_crc(&self) -> bool {
        self.data_crc
    }

    /// Everything before the first byte goes out, shared by the blocking and the async paths:
    /// check the buffers against the descriptors (`len` gives an inline buffer's length), take
    /// the sequence number, build the header, lend the shared buffers and fence their bytes.
    pub(crate) fn prepare<E, B, const N: usize>(
        &self,
        pickle: &[u8],
        descriptors: &[Descriptor],
        buffers: Vec<Outgoing<'_, B>, N>,
        len: impl Fn(&B) -> usize,
    ) -> Result<Frame<B, N>, PublishError<E, B, N>> {
        let mut entries: Vec<Entry, N> = Vec::new();
        let checked = check(pickle, descriptors, &buffers, len, &mut entries);
        let (pickle_len, inline_len) = match checked {
            Ok(lens) => lens,
            Err(error) => return Err(give_back(error, None, buffers)),
        };
        let (seq, mut flags) = self.take_seq();
        if !self.data_crc {
            flags |= FLAG_NO_DATA_CRC;
        }
        let header = Header {
            flags,
            buffers: entries.len() as u16,
            seq,
            pickle_len,
            inline_len,
        };
        // Lend shared buffers before their descriptors leave, and make their bytes visible to
        // the host before the frame that names them.
        let mut inline: Vec<B, N> = Vec::new();
        for b in buffers {
            match b {
                Outgoing::Inline(b) => {
                    // Cannot fail: at most N buffers into a Vec of capacity N.
                    let _ = inline.push(b);
                }
                Outgoing::Shared(s) => s.lend(),
            }
        }
        fence(Ordering::Release);
        Ok(Frame {
            header,
            entries,
            inline,
        })
    }
}

/// A message checked, numbered and with its shared buffers lent: what is left is writing
/// `header`, the pickle, `entries`, the body CRC, the `inline` buffers and the data CRC.
pub(crate) struct Frame<B, const N: usize> {
    pub(crate) header: Header,
    pub(crate) entries: Vec<Entry, N>,
    pub(crate) inline: Vec<B, N>,
}

/// The error of a frame cut off by the link: the buffers sent (`done`) and not yet sent, back in
/// message order.
pub(crate) fn link_failed<E, B, const N: usize>(
    e: E,
    done: Vec<B, N>,
    rest: impl IntoIterator<Item = B>,
) -> PublishError<E, B, N> {
    PublishError {
        error: Error::Link,
        link: Some(e),
        inline: done.into_iter().chain(rest).collect(),
    }
}

/// The length of an inline DMA buffer (no memory is read).
fn inline_len<B: ReadBuffer<Word = u8>>(b: &B) -> usize {
    // SAFETY: only the length is used; no memory is read.
    unsafe { b.read_buffer() }.1
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

/// Check the buffers against the descriptors; fill `entries`; return (pickle_len, inline_len).
fn check<B, const N: usize>(
    pickle: &[u8],
    descriptors: &[Descriptor],
    buffers: &[Outgoing<'_, B>],
    len: impl Fn(&B) -> usize,
    entries: &mut Vec<Entry, N>,
) -> Result<(u32, u32), Error> {
    if descriptors.len() != buffers.len() {
        return Err(Error::BufferCount {
            descriptors: descriptors.len(),
            buffers: buffers.len(),
        });
    }
    let pickle_len = u32::try_from(pickle.len())
        .map_err(|_| Error::Frame(dmapickle_core::Error::FrameLength))?;
    if N > usize::from(u16::MAX) {
        return Err(Error::Frame(dmapickle_core::Error::FrameLength));
    }
    let mut inline_len = 0u32;
    for (index, (d, b)) in descriptors.iter().zip(buffers.iter()).enumerate() {
        let entry = match b {
            Outgoing::Inline(b) => {
                if len(b) != d.len as usize {
                    return Err(Error::DescriptorMismatch { index });
                }
                inline_len = inline_len
                    .checked_add(d.len)
                    .ok_or(Error::Frame(dmapickle_core::Error::FrameLength))?;
                Entry::inline(*d)
            }
            Outgoing::Shared(s) => {
                let have = s.descriptor();
                if (have.region, have.offset, have.len) != (d.region, d.offset, d.len) {
                    return Err(Error::DescriptorMismatch { index });
                }
                Entry::shared(*d)
            }
        };
        entries
            .push(entry)
            .map_err(|_| Error::Frame(dmapickle_core::Error::FrameLength))?;
    }
    Ok((pickle_len, inline_len))
}

/// Refuse a message before anything was written: inline buffers back, shared ones freed.
fn give_back<E, B, const N: usize>(
    error: Error,
    link: Option<E>,
    buffers: Vec<Outgoing<'_, B>, N>,
) -> PublishError<E, B, N> {
    let inline = buffers
        .into_iter()
        .filter_map(|b| match b {
            Outgoing::Inline(b) => Some(b),
            Outgoing::Shared(_) => None,
        })
        .collect();
    PublishError {
        error,
        link,
        inline,
    }
}
