//! Finding replies in the bytes the data reader skipped.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use dmapickle_core::control::{parse, Direction, Parsed, Reply, MAX_FRAME, VERSION};

/// How many decoded replies a scanner keeps for callers that have not asked yet (older ones are
/// dropped: a reply nobody waits for any more is a late answer to a timed-out attempt).
const KEEP: usize = 16;

/// Reassembles reply frames from a byte stream (the data reader's skipped bytes).
#[derive(Debug, Default)]
pub struct ReplyScanner {
    held: Vec<u8>,
    replies: VecDeque<(u32, Reply)>,
    /// Reply frames found (CRC matched and decoded).
    pub found: u64,
}

impl ReplyScanner {
    /// Takes the next bytes, in stream order.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match parse(Direction::Up, &self.held[at..]) {
                Parsed::NeedMore => break,
                Parsed::Skip(n) => at += n,
                Parsed::Frame {
                    version,
                    id,
                    payload,
                    len,
                } => {
                    if let (VERSION, Ok(reply)) = (version, Reply::decode(payload)) {
                        self.found += 1;
                        if self.replies.len() == KEEP {
                            self.replies.pop_front();
                        }
                        self.replies.push_back((id, reply));
                    }
                    at += len;
                }
            }
        }
        self.held.drain(..at);
        debug_assert!(self.held.len() < MAX_FRAME);
    }

    /// The reply to request `id`, if it has arrived (taken: asked once).
    pub fn take(&mut self, id: u32) -> Option<Reply> {
        let i = self.replies.iter().position(|(r, _)| *r == id)?;
        self.replies.remove(i).map(|(_, r)| r)
    }
}

/// A [`ReplyScanner`] shared by the thread that reads the link and the callers waiting for
/// replies.
#[derive(Debug, Default)]
pub struct Replies {
    scanner: Mutex<ReplyScanner>,
    arrived: Condvar,
}

impl Replies {
    /// Takes skipped bytes from the reader (its skip tap).
    pub fn feed(&self, bytes: &[u8]) {
        let mut s = self.lock();
        let before = s.found;
        s.feed(bytes);
        if s.found != before {
            self.arrived.notify_all();
        }
    }

    /// Waits until the reply to `id` arrives or `deadline` passes.
    pub fn wait(&self, id: u32, deadline: Instant) -> Option<Reply> {
        let mut s = self.lock();
        loop {
            if let Some(r) = s.take(id) {
                return Some(r);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self
                .arrived
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Reply frames found so far.
    pub fn found(&self) -> u64 {
        self.lock().found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyScanner> {
        self.scanner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmapickle_core::control::encode_reply;

    #[test]
    fn replies_split_anywhere_among_noise() {
        let mut bytes = b"noise \xf1\x50".to_vec();
        let mut f = [0u8; MAX_FRAME];
        for id in 0..3u32 {
            bytes.extend_from_slice(
                encode_reply(id, &Reply::Applied { at_seq: id * 100 }, &mut f).unwrap(),
            );
            bytes.extend_from_slice(b"\xf1\x50\x4b\x05 data");
        }
        for split in 1..bytes.len() {
            let mut s = ReplyScanner::default();
            for chunk in bytes.chunks(split) {
                s.feed(chunk);
            }
            assert_eq!(s.found, 3);
            assert_eq!(s.take(2), Some(Reply::Applied { at_seq: 200 }));
            assert_eq!(s.take(2), None);
            assert_eq!(s.take(0), Some(Reply::Applied { at_seq: 0 }));
        }
    }
}
