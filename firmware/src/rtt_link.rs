//! The data link of a real board through a debug probe: an RTT up channel (feature `rtt`), and
//! the host's commands on an RTT down channel ([`RttReader`]).
//!
//! `probe-rs` (the host's `rtt://` source) reads the channel named `dmapickle` out of the
//! target's RAM while the core runs; a separate channel carries defmt. Commands
//! (`dmapickle_core::control`) come down on down channel 0, also named `dmapickle`: the firmware
//! polls it between blocks with `dmapickle_hal::control::CommandReader::poll_read`, and the
//! replies go up between two frames on the frame channel.
//!
//! # Flow control
//! The channel starts non-blocking (`NoBlockSkip`), so an instrument that no probe reads (a
//! board on the bench, the host not yet attached) keeps sampling instead of stalling. A frame
//! that does not fit in the ring's free space when its header is written is skipped whole and
//! counted ([`RttWriter::skipped`]): the ring only ever holds whole frames, and the host sees
//! the skipped ones as lost sequence numbers. When the host attaches it sets the channel's mode
//! flags to `BlockIfFull` (probe-rs `UpChannel::set_mode`, as dmapickle-host's `rtt://` source
//! does), and from the next frame on the writer waits for the probe to make room: nothing is
//! lost while someone reads. The host sets `NoBlockSkip` again when it lets go; a frame begun
//! while blocking that no longer fits then is cut ([`RttWriter::cut`]), and the host's reader
//! drops it by its CRC.
//!
//! The ring's free space is read from the channel's descriptor in the SEGGER control block
//! (`_SEGGER_RTT`, the layout probe-rs reads): rtt-target's `UpChannel` does not expose it, and
//! its `write` in `NoBlockSkip` mode reports bytes it did not commit when a write does not fit.

use core::convert::Infallible;
use core::sync::atomic::{AtomicUsize, Ordering};

use dmapickle_core::frame::{Header, HEADER_LEN};
use dmapickle_hal::embedded_io::{ErrorType, Write};
use dmapickle_hal::embedded_io::{Read, ReadReady};
use rtt_target::{ChannelMode, DownChannel, UpChannel};

/// The SEGGER RTT control block's header: its id, then how many up and down channel
/// descriptors follow it.
#[repr(C)]
#[allow(dead_code)] // the device reads `max_up`; `id` and `max_down` are the probe's
struct ControlBlock {
    id: [u8; 16],
    max_up: usize,
    max_down: usize,
}

/// One channel descriptor of the control block (rtt-target's `RttChannel`, SEGGER's
/// `SEGGER_RTT_BUFFER_UP`): the device moves `write`, the probe `read` and `flags`.
#[repr(C)]
#[allow(dead_code)] // `name` and `buffer` are read by the probe (and the tests)
struct Descriptor {
    name: *const u8,
    buffer: *mut u8,
    size: usize,
    write: AtomicUsize,
    read: AtomicUsize,
    flags: AtomicUsize,
}

extern "C" {
    #[link_name = "_SEGGER_RTT"]
    static CONTROL_BLOCK: ControlBlock;
}

/// Which of the control block's channel arrays.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Device to host (the `max_up` descriptors right after the header).
    Up,
    /// Host to device (the `max_down` descriptors after the up ones).
    Down,
}

/// Descriptor `number` of `direction` in the control block `rtt_target::rtt_init!` made, `None`
/// if there is no such channel.
#[allow(unsafe_code)] // the control block's descriptors: the one unsafe block of this crate's lib
fn descriptor(direction: Direction, number: usize) -> Option<&'static Descriptor> {
    // SAFETY: `rtt_init!` defined `_SEGGER_RTT` (the symbol `UpChannel::conjure` reads too) and
    // initialised it before it returned the channels; the control block is a static, never
    // moved or freed. Its header is followed in memory by `max_up` up channel descriptors, then
    // `max_down` down channel descriptors (SEGGER's layout, rtt-target's `RttControlBlock`), so
    // descriptor `number` below the count of its direction is in bounds. The fields either side
    // moves (`write`, `read`, `flags`) are atomics.
    unsafe {
        let block = &*core::ptr::addr_of!(CONTROL_BLOCK);
        let (skip, count) = match direction {
            Direction::Up => (0, block.max_up),
            Direction::Down => (block.max_up, block.max_down),
        };
        if number >= count {
            return None;
        }
        let first = (block as *const ControlBlock).add(1).cast::<Descriptor>();
        Some(&*first.add(skip + number))
    }
}

/// Bytes that can be written to a ring of `size` bytes before the device's `write` offset
/// reaches the probe's `read` offset (one byte stays free, so full and empty differ).
pub const fn free_space(size: usize, write: usize, read: usize) -> usize {
    if write >= size || read >= size {
        0 // not a consistent ring: rtt-target resets it on its next write
    } else if read > write {
        read - write - 1
    } else {
        size - 1 - (write - read)
    }
}

/// What the writer does with the rest of the current frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Frame {
    /// Into the channel.
    Send,
    /// Dropped (skipped whole, or cut after the host let go).
    Drop,
}

/// An RTT up channel as an `embedded_io::Write` that never tears a frame while non-blocking
/// (see the [module docs](self)); `dmapickle_hal::WriteLink` makes it the link (RTT is a memory
/// copy into the channel's ring: a transfer is done when it returns).
pub struct RttWriter {
    channel: UpChannel,
    descriptor: &'static Descriptor,
    /// Bytes of the current frame not yet written (or dropped); 0 between frames.
    left: u64,
    frame: Frame,
    skipped: u32,
    cut: u32,
    attached: bool,
}

impl RttWriter {
    /// The writer for `channel`, which is up channel `number` of the control block
    /// `rtt_target::rtt_init!` made (`None` if there is no such channel).
    pub fn new(channel: UpChannel, number: usize) -> Option<Self> {
        let descriptor = descriptor(Direction::Up, number)?;
        Some(Self {
            channel,
            descriptor,
            left: 0,
            frame: Frame::Send,
            skipped: 0,
            cut: 0,
            attached: false,
        })
    }

    /// Frames skipped whole because they did not fit while no host read the channel.
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// Frames cut because the host switched the channel back to non-blocking mid-frame.
    pub fn cut(&self) -> u32 {
        self.cut
    }

    fn blocking(&mut self) -> bool {
        let blocking = self.channel.mode() == ChannelMode::BlockIfFull;
        if blocking != self.attached {
            self.attached = blocking;
            #[cfg(feature = "defmt")]
            if blocking {
                defmt::info!(
                    "rtt: host attached (channel blocking); {=u32} frames skipped before",
                    self.skipped
                );
            } else {
                defmt::info!("rtt: host let go (channel non-blocking)");
            }
        }
        blocking
    }

    fn free(&self) -> usize {
        let d = self.descriptor;
        free_space(
            d.size,
            d.write.load(Ordering::SeqCst),
            d.read.load(Ordering::SeqCst),
        )
    }

    /// Writes `bytes` whole: blocking, or when they fit (never a part: see the module docs).
    fn put(&mut self, bytes: &[u8]) -> bool {
        if self.blocking() || self.free() >= bytes.len() {
            self.channel.write(bytes);
            true
        } else {
            false
        }
    }
}

impl ErrorType for RttWriter {
    type Error = Infallible;
}

impl Write for RttWriter {
    /// Takes all of `bytes`: written, or dropped with the rest of a frame that does not fit.
    /// The first write of a frame is its header (as `dmapickle_hal::Publisher` writes it), which
    /// gives the frame's length; bytes that are not a frame are written if they fit.
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        if bytes.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let header = bytes
                .first_chunk::<HEADER_LEN>()
                .and_then(|h| Header::decode(h).ok());
            let Some(header) = header else {
                self.put(bytes);
                return Ok(bytes.len());
            };
            self.left = header.frame_len();
            self.frame = if self.blocking() || self.free() as u64 >= self.left {
                Frame::Send
            } else {
                self.skipped += 1;
                #[cfg(feature = "defmt")]
                if self.skipped == 1 {
                    defmt::warn!("rtt: no host reads the frame channel: skipping frames whole (seq {=u32} first)", header.seq);
                }
                Frame::Drop
            };
        }
        let n = bytes
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if self.frame == Frame::Send && !self.put(&bytes[..n]) {
            self.cut += 1;
            self.frame = Frame::Drop;
        }
        self.left -= n as u64;
        if n < bytes.len() {
            // A frame ended inside this write: the rest starts the next one (not what the
            // publisher does, but a caller may batch).
            self.write(&bytes[n..])?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// An RTT down channel as the down direction of the link: `embedded_io::Read` + `ReadReady`, for
/// `CommandReader::poll_read` between blocks. The probe (probe-rs `DownChannel::write`) copies
/// bytes into the ring and moves `write`; this side copies them out and moves `read`.
pub struct RttReader {
    channel: DownChannel,
    descriptor: &'static Descriptor,
}

impl RttReader {
    /// The reader for `channel`, which is down channel `number` of the control block
    /// `rtt_target::rtt_init!` made (`None` if there is no such channel).
    pub fn new(channel: DownChannel, number: usize) -> Option<Self> {
        let descriptor = descriptor(Direction::Down, number)?;
        Some(Self {
            channel,
            descriptor,
        })
    }
}

impl ErrorType for RttReader {
    type Error = Infallible;
}

impl ReadReady for RttReader {
    /// Whether the host has written bytes not read yet.
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        let d = self.descriptor;
        Ok(d.write.load(Ordering::SeqCst) != d.read.load(Ordering::SeqCst))
    }
}

impl Read for RttReader {
    /// Copies out what the host wrote, at least one byte (waiting for it, as `embedded_io::Read`
    /// asks; after [`ReadReady::read_ready`] said so it never waits), at most `buf.len()`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.channel.read(buf);
            if n > 0 {
                return Ok(n);
            }
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests;
