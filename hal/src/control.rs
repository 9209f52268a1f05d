//! Device side of host -> device control (feature `control`): the command reader the firmware
//! polls between blocks, and the reply cache that makes a repeated request id harmless.
//!
//! The frames and messages are `dmapickle_core::control`'s (`docs/wire-format.md`, "Control").
//! [`CommandReader`] holds at most one control frame ([`MAX_FRAME`] bytes) and no allocation: it
//! takes bytes from any [`embedded_io::Read`] + [`embedded_io::ReadReady`] without blocking
//! ([`CommandReader::poll_read`]), one byte at a time ([`CommandReader::push`]), or from an
//! `embedded_io_async::Read` such as an embassy-net TCP socket's read half
//! ([`CommandReader::read_async`], feature `async`). Garbage, cut-off and corrupt frames are
//! skipped (counted in [`CommandReader::bytes_skipped`]) and the reader resynchronises on the next
//! sync word, re-scanning what it held, so a good command after a bad one is never lost.
//!
//! ```
//! use dmapickle_core::control::{encode_request, Reply, Request};
//! use dmapickle_hal::control::{CommandReader, ReplyCache};
//! let mut frame = [0u8; 32];
//! let cmd = encode_request(5, &Request::Stop, &mut frame).unwrap();
//! let mut down = vec![0x00, 0xf1, 0x50]; // line noise, a partial sync word
//! down.extend_from_slice(&cmd[..cmd.len() - 1]); // a command cut off...
//! down.extend_from_slice(cmd); // ...and its retry
//! let mut reader = CommandReader::new();
//! let got: Vec<_> = down.iter().filter_map(|&b| reader.push(b)).collect();
//! assert_eq!(got.len(), 1);
//! assert_eq!((got[0].id, got[0].request), (5, Ok(Request::Stop)));
//! assert_eq!(reader.bytes_skipped() as usize, 3 + cmd.len() - 1);
//!
//! let mut cache = ReplyCache::new();
//! let mut applied = 0;
//! for _ in 0..2 {
//!     // The host did not see the first reply and sent the same id again: applied once.
//!     cache.answer(&got[0], |_| { applied += 1; Reply::Applied { at_seq: 40 } });
//! }
//! assert_eq!((applied, cache.repeats()), (1, 1));
//! ```

use dmapickle_core::control::{
    encode_reply, parse, CommandError, Direction, Parsed, Reply, Request, MAX_FRAME, VERSION,
};

/// One command taken off the down link: its request id and what it asks, or why it cannot be
/// read (an unknown command or version, which the device answers with that error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Command {
    /// The request id, echoed by the reply.
    pub id: u32,
    /// The command, or the error to reply with.
    pub request: Result<Request, CommandError>,
}

/// Reassembles commands from the down link. See the [module docs](self).
#[derive(Debug)]
pub struct CommandReader {
    buf: [u8; MAX_FRAME],
    len: usize,
    skipped: u32,
}

impl Default for CommandReader {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandReader {
    /// An empty reader.
    pub const fn new() -> Self {
        CommandReader {
            buf: [0; MAX_FRAME],
            len: 0,
            skipped: 0,
        }
    }

    /// Down-link bytes that were not part of a command (wrapping).
    pub const fn bytes_skipped(&self) -> u32 {
        self.skipped
    }

    /// The next whole command among the bytes held, if any.
    pub fn next_command(&mut self) -> Option<Command> {
        loop {
            let held = self.buf.get(..self.len).unwrap_or_default();
            let (used, cmd) = match parse(Direction::Down, held) {
                Parsed::NeedMore => return None,
                Parsed::Skip(n) => {
                    self.skipped = self.skipped.wrapping_add(n as u32);
                    (n, None)
                }
                Parsed::Frame {
                    version,
                    id,
                    payload,
                    len,
                } => {
                    let request = if version != VERSION {
                        Err(CommandError::UnsupportedVersion { supported: VERSION })
                    } else {
                        Request::decode(payload).map_err(|_| CommandError::Unknown)
                    };
                    (len, Some(Command { id, request }))
                }
            };
            self.buf.copy_within(used..self.len, 0);
            self.len -= used;
            if cmd.is_some() {
                return cmd;
            }
        }
    }

    /// Free space for the next bytes; report what was written with [`Self::filled`]. Never empty
    /// once [`Self::next_command`] returned `None` (the reader then holds less than one frame).
    pub fn space(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.len..).unwrap_or_default()
    }

    /// `n` bytes were written at the start of [`Self::space`].
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(MAX_FRAME);
    }

    /// Takes one byte; returns the command it completes, if any.
    pub fn push(&mut self, byte: u8) -> Option<Command> {
        if let Some(slot) = self.space().first_mut() {
            *slot = byte;
            self.filled(1);
        }
        self.next_command()
    }

    /// Reads what `r` has ready, without blocking, until a command is complete or nothing more is
    /// ready. `Ok(None)`: no whole command yet (the bytes are kept for the next call).
    pub fn poll_read<R>(&mut self, r: &mut R) -> Result<Option<Command>, R::Error>
    where
        R: embedded_io::Read + embedded_io::ReadReady,
    {
        loop {
            if let Some(cmd) = self.next_command() {
                return Ok(Some(cmd));
            }
            if !r.read_ready()? {
                return Ok(None);
            }
            let n = r.read(self.space())?;
            if n == 0 {
                return Ok(None);
            }
            self.filled(n);
        }
    }

    /// Waits for the next command from `r`. `Ok(None)` at the end of the stream (a closed
    /// connection); bytes after the command stay held for the next call. Cancel-safe: bytes
    /// read before the future is dropped stay held too.
    #[cfg(feature = "async")]
    pub async fn read_async<R>(&mut self, r: &mut R) -> Result<Option<Command>, R::Error>
    where
        R: embedded_io_async::Read,
    {
        loop {
            if let Some(cmd) = self.next_command() {
                return Ok(Some(cmd));
            }
            let n = r.read(self.space()).await?;
            if n == 0 {
                return Ok(None);
            }
            self.filled(n);
        }
    }
}

/// The last reply sent, so that a command retried with the same request id (its reply was lost)
/// is answered again without being applied twice. It remembers one id: the host sends one
/// command at a time and waits for its reply (or its timeout) before the next.
#[derive(Debug)]
pub struct ReplyCache {
    id: Option<u32>,
    frame: [u8; MAX_FRAME],
    len: usize,
    repeats: u32,
}

impl Default for ReplyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyCache {
    /// Nothing answered yet.
    pub const fn new() -> Self {
        ReplyCache {
            id: None,
            frame: [0; MAX_FRAME],
            len: 0,
            repeats: 0,
        }
    }

    /// Commands answered from the cache (a repeated id), not applied again.
    pub const fn repeats(&self) -> u32 {
        self.repeats
    }

    /// The reply frame for `cmd`: the cached one if its id is the last one answered, else
    /// `apply(cmd.request)` encoded (and cached). Returns the frame to send and whether `apply`
    /// ran. A reply that does not fit a frame (never, for this crate's types: a unit test checks
    /// the largest) becomes [`CommandError::Unknown`].
    pub fn answer(
        &mut self,
        cmd: &Command,
        apply: impl FnOnce(Result<Request, CommandError>) -> Reply,
    ) -> (&[u8], bool) {
        if self.repeat(cmd) {
            return (self.last(), false);
        }
        let reply = apply(cmd.request);
        (self.record(cmd.id, &reply), true)
    }

    /// [`Self::answer`] in two steps, for a caller that must wait (an async firmware pausing
    /// its ADC) between them: `true` if `cmd` repeats the last id answered (counted in
    /// [`Self::repeats`]; send [`Self::last`] again), else `false` and the caller answers with
    /// [`Self::record`].
    pub fn repeat(&mut self, cmd: &Command) -> bool {
        let repeat = self.is_repeat(cmd);
        if repeat {
            self.repeats = self.repeats.wrapping_add(1);
        }
        repeat
    }

    /// The last reply frame recorded (empty before the first).
    pub fn last(&self) -> &[u8] {
        self.frame.get(..self.len).unwrap_or_default()
    }

    /// Encodes and caches `reply` as the answer to request `id`; returns the frame to send.
    pub fn record(&mut self, id: u32, reply: &Reply) -> &[u8] {
        self.len = match encode_reply(id, reply, &mut self.frame) {
            Ok(f) => f.len(),
            Err(_) => encode_reply(id, &Reply::Error(CommandError::Unknown), &mut self.frame)
                .map_or(0, |f| f.len()),
        };
        self.id = Some(id);
        self.last()
    }

    fn is_repeat(&self, cmd: &Command) -> bool {
        self.id == Some(cmd.id)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use dmapickle_core::control::encode_request;

    struct Chunks<'a>(&'a [u8], usize);
    impl embedded_io::ErrorType for Chunks<'_> {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::ReadReady for Chunks<'_> {
        fn read_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.0.is_empty())
        }
    }
    impl embedded_io::Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn stream(reqs: &[(u32, Request)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, r) in reqs {
            let mut f = [0u8; MAX_FRAME];
            out.extend_from_slice(encode_request(*id, r, &mut f).unwrap());
        }
        out
    }

    #[test]
    fn back_to_back_commands_in_any_chunking() {
        let reqs = [
            (1, Request::GetInfo),
            (2, Request::SetRate { rate_hz: 1000 }),
            (3, Request::Ping { host_ns: u64::MAX }),
            (4, Request::Start),
        ];
        let bytes = stream(&reqs);
        for chunk in 1..=bytes.len() {
            let mut src = Chunks(&bytes, chunk);
            let mut r = CommandReader::new();
            let mut got = Vec::new();
            while let Some(c) = r.poll_read(&mut src).unwrap() {
                got.push((c.id, c.request.unwrap()));
            }
            assert_eq!(got, reqs, "chunk {chunk}");
            assert_eq!(r.bytes_skipped(), 0);
        }
    }

    #[test]
    fn a_bit_flip_anywhere_loses_that_command_only() {
        let reqs = [
            (10, Request::SetBlockRows { rows: 128 }),
            (11, Request::GetStats),
        ];
        let good = stream(&reqs);
        let first = good.len() - stream(&reqs[1..]).len();
        for bit in 0..first * 8 {
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            // A flipped length can make the reader wait for bytes that are not coming, until the
            // host, seeing no reply, sends its command again (same id) after MAX_FRAME zeros.
            bytes.extend_from_slice(&[0; MAX_FRAME]);
            bytes.extend_from_slice(&stream(&reqs[1..]));
            let mut r = CommandReader::new();
            let got: Vec<_> = bytes.iter().filter_map(|&b| r.push(b)).collect();
            // The damaged command is never applied; the next one always arrives.
            let want = Command {
                id: 11,
                request: Ok(Request::GetStats),
            };
            assert!(got.contains(&want), "bit {bit}: {got:?}");
            assert!(got.iter().all(|c| c.id != 10), "bit {bit}: {got:?}");
        }
    }

    #[test]
    fn unknown_command_and_version_are_answered_with_errors() {
        let mut f = [0u8; MAX_FRAME];
        let n = dmapickle_core::control::encode_frame(Direction::Down, 3, &[0x2a], &mut f).unwrap();
        let mut r = CommandReader::new();
        let cmd = f[..n].iter().find_map(|&b| r.push(b)).unwrap();
        assert_eq!(cmd.request, Err(CommandError::Unknown));
        f[4] = 2;
        let crc = dmapickle_core::frame::crc32c(&f[..n - 4]);
        f[n - 4..n].copy_from_slice(&crc.to_le_bytes());
        let cmd = f[..n].iter().find_map(|&b| r.push(b)).unwrap();
        assert_eq!(
            cmd.request,
            Err(CommandError::UnsupportedVersion { supported: 1 })
        );
    }

    #[cfg(feature = "async")]
    #[test]
    fn the_async_reader_keeps_what_follows_a_command() {
        let reqs = [(1, Request::Stop), (2, Request::Start)];
        let mut bytes = std::vec![0x55, 0xf1];
        bytes.extend_from_slice(&stream(&reqs));
        let mut src: &[u8] = &bytes;
        let mut r = CommandReader::new();
        let mut got = Vec::new();
        while let Some(c) = embassy_futures::block_on(r.read_async(&mut src)).unwrap() {
            got.push((c.id, c.request.unwrap()));
        }
        assert_eq!(got, reqs);
        assert_eq!(r.bytes_skipped(), 2);
    }

    #[test]
    fn a_new_id_is_applied_again() {
        let mut cache = ReplyCache::new();
        let mut n = 0;
        for id in [1, 1, 2, 2, 2, 1] {
            let cmd = Command {
                id,
                request: Ok(Request::Start),
            };
            cache.answer(&cmd, |_| {
                n += 1;
                Reply::Applied { at_seq: n }
            });
        }
        assert_eq!((n, cache.repeats()), (3, 3));
    }

    #[test]
    fn the_two_step_answer_is_the_one_step_answer() {
        let (mut one, mut two) = (ReplyCache::new(), ReplyCache::new());
        for (id, at_seq) in [(7, 1), (7, 2), (8, 3)] {
            let cmd = Command {
                id,
                request: Ok(Request::Stop),
            };
            let reply = Reply::Applied { at_seq };
            let (a, _) = one.answer(&cmd, |_| reply);
            let a = a.to_vec();
            let b = if two.repeat(&cmd) {
                two.last().to_vec()
            } else {
                two.record(cmd.id, &reply).to_vec()
            };
            assert_eq!(a, b, "id {id}");
        }
        assert_eq!((one.repeats(), two.repeats()), (1, 1));
    }
}
