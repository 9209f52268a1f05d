//! The skip-whole-frame logic over a real rtt-target channel in this process's memory, read the
//! way probe-rs reads a target's: the channel's descriptor in the control block, the ring copied
//! out and its `read` offset moved, the mode flags set on attach. The frames are the hal
//! publisher's; every byte the "probe" gets must parse as whole, CRC-checked frames. The down
//! channel of the same control block (one per process: `rtt_init!` defines `_SEGGER_RTT`)
//! carries commands written the way probe-rs writes them, read by the hal's `CommandReader`.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use dmapickle_core::control::{encode_request, Request, MAX_FRAME};
use dmapickle_core::frame::{crc32c, Body, Header, CRC_LEN, HEADER_LEN};
use dmapickle_hal::control::CommandReader;
use dmapickle_hal::embedded_io::ReadReady;
use dmapickle_hal::{Publisher, WriteLink};
use rtt_target::{ChannelMode, DownChannel};

use super::{free_space, Descriptor, RttReader, RttWriter};

/// The host's end of up channel 1: what probe-rs does over SWD, done on the same memory.
#[derive(Clone, Copy)]
struct Probe(&'static Descriptor);

// SAFETY: the descriptor's fields the probe touches are atomics and the ring's bytes, which the
// device only writes before it moves `write` past them (SeqCst), as on a target.
unsafe impl Send for Probe {}

impl Probe {
    /// Copies out what the device committed and hands the space back (probe-rs `read`).
    fn read(self, out: &mut Vec<u8>) -> usize {
        let d = self.0;
        let (write, mut read) = (d.write.load(SeqCst), d.read.load(SeqCst));
        let start = out.len();
        while read != write {
            // SAFETY: `buffer` is the channel's `size`-byte ring and `read < size`.
            out.push(unsafe { *d.buffer.add(read) });
            read = (read + 1) % d.size;
        }
        d.read.store(read, SeqCst);
        out.len() - start
    }

    /// What probe-rs's `UpChannel::set_mode` writes: the low two bits of `flags`.
    fn set_mode(self, mode: ChannelMode) {
        let flags = self.0.flags.load(SeqCst);
        self.0.flags.store((flags & !3) | mode as usize, SeqCst);
    }
}

/// The seq of every frame in `bytes`, which must be whole frames back to back, each with valid
/// header, body and data CRCs (a torn frame fails here).
fn frames(bytes: &[u8]) -> Vec<u32> {
    let (mut seqs, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        let head: &[u8; HEADER_LEN] = bytes[at..at + HEADER_LEN].try_into().unwrap();
        let h = Header::decode(head).unwrap_or_else(|e| panic!("no frame at byte {at}: {e:?}"));
        let (body, len) = (h.body_len() as usize, h.frame_len() as usize);
        assert!(
            at + len <= bytes.len(),
            "frame seq {} cut off at byte {}",
            h.seq,
            bytes.len()
        );
        Body::parse(&h, &bytes[at + HEADER_LEN..at + HEADER_LEN + body]).unwrap();
        let data = &bytes[at + HEADER_LEN + body..at + len - CRC_LEN];
        let crc = u32::from_le_bytes(bytes[at + len - CRC_LEN..at + len].try_into().unwrap());
        assert_eq!(crc32c(data), crc, "data CRC of seq {}", h.seq);
        seqs.push(h.seq);
        at += len;
    }
    seqs
}

/// A 40..=89-byte pickle for frame `i` (its frame is 32 bytes more).
fn pickle(i: u32) -> Vec<u8> {
    vec![i as u8; 40 + (i as usize * 7) % 50]
}

#[test]
fn free_space_keeps_one_byte_between_write_and_read() {
    assert_eq!(free_space(512, 0, 0), 511);
    assert_eq!(free_space(512, 100, 0), 411);
    assert_eq!(free_space(512, 100, 101), 0);
    assert_eq!(free_space(512, 500, 20), 31);
    assert_eq!(free_space(512, 512, 0), 0); // corrupt offsets: nothing fits
}

#[test]
fn frames_are_skipped_whole_until_the_host_attaches_and_none_is_lost_after() {
    let channels = rtt_target::rtt_init! {
        up: {
            0: { size: 64, name: "defmt" }
            1: { size: 512, mode: ChannelMode::NoBlockSkip, name: "dmapickle" }
        }
        down: {
            0: { size: 64, name: "dmapickle" }
        }
    };
    commands_come_down_whole_and_in_order(channels.down.0);
    let writer = RttWriter::new(channels.up.1, 1).expect("up channel 1");
    let probe = Probe(writer.descriptor);
    let mut link = WriteLink::new(writer);
    let publisher = Publisher::new();
    let mut seq = 0u32;
    let mut publish = |link: &mut WriteLink<RttWriter>, n: u32| {
        for _ in 0..n {
            assert_eq!(publisher.publish_pickle(link, &pickle(seq)).unwrap(), seq);
            seq += 1;
        }
    };

    // No host: 40 frames of 72..121 bytes into a 511-byte ring. The device never waits; the ring
    // holds the first few whole, then only a later frame small enough for what is left, and the
    // rest are skipped whole, never a part of one.
    publish(&mut link, 40);
    let mut got = Vec::new();
    probe.read(&mut got);
    let first = frames(&got);
    let k = first.len() as u32;
    assert!((4..=7).contains(&k), "{first:?}");
    assert_eq!(first[..4], [0, 1, 2, 3]);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]) && got.len() <= 511,
        "{first:?}"
    );
    assert_eq!(
        (link.get_ref().skipped(), link.get_ref().cut()),
        (40 - k, 0)
    );
    // Room again: the next frames go through, and the host sees the skipped ones as lost seqs.
    publish(&mut link, 2);
    got.clear();
    probe.read(&mut got);
    assert_eq!(frames(&got), vec![40, 41]);

    // The host attaches (sets BlockIfFull) and reads while the device publishes 300 frames, ten
    // times the ring: the device waits for room, so every one arrives, in order, whole.
    probe.set_mode(ChannelMode::BlockIfFull);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            while !done.load(SeqCst) || probe.read(&mut all) > 0 {
                probe.read(&mut all);
                std::thread::yield_now();
            }
            all
        })
    };
    publish(&mut link, 300);
    done.store(true, SeqCst);
    let all = reader.join().unwrap();
    assert_eq!(frames(&all), (42..342).collect::<Vec<_>>());
    assert_eq!(
        (link.get_ref().skipped(), link.get_ref().cut()),
        (40 - k, 0)
    );

    // The host lets go (NoBlockSkip again) and stops reading: skipping resumes, whole frames.
    probe.set_mode(ChannelMode::NoBlockSkip);
    publish(&mut link, 40);
    got.clear();
    probe.read(&mut got);
    let last = frames(&got);
    assert_eq!(last, (342..342 + last.len() as u32).collect::<Vec<_>>());
    assert_eq!(link.get_ref().skipped(), 40 - k + 40 - last.len() as u32);
}

/// What probe-rs's `DownChannel::write` does: copies as much of `bytes` as fits into the ring
/// (one byte stays free) and moves `write`; returns how much.
fn write_down(d: &Descriptor, bytes: &[u8]) -> usize {
    let (mut write, read) = (d.write.load(SeqCst), d.read.load(SeqCst));
    let mut n = 0;
    for &b in bytes {
        if (write + 1) % d.size == read {
            break;
        }
        // SAFETY: `buffer` is the channel's `size`-byte ring and `write < size`; the device
        // reads these bytes only once `write` moved past them (SeqCst), as on a target.
        unsafe { *d.buffer.add(write) = b };
        write = (write + 1) % d.size;
        n += 1;
    }
    d.write.store(write, SeqCst);
    n
}

/// 40 commands through a 64-byte down ring (it wraps every few commands), written as the probe
/// makes room, one with a flipped payload bit: every good one arrives once, in order, the
/// damaged one never.
fn commands_come_down_whole_and_in_order(channel: DownChannel) {
    let mut reader = RttReader::new(channel, 0).expect("down channel 0");
    let d = reader.descriptor;
    let mut commands = CommandReader::new();
    assert!(!reader.read_ready().unwrap());
    assert_eq!(commands.poll_read(&mut reader).unwrap(), None);
    let mut got = Vec::new();
    for id in 0..40u32 {
        let mut f = [0u8; MAX_FRAME];
        let request = Request::SetRate { rate_hz: 1000 + id };
        let mut frame = encode_request(id, &request, &mut f).unwrap().to_vec();
        if id == 7 {
            frame[10] ^= 0x10; // the first payload byte: the frame's CRC fails
        }
        let mut at = 0;
        while at < frame.len() {
            at += write_down(d, &frame[at..]);
            while let Some(cmd) = commands.poll_read(&mut reader).unwrap() {
                got.push((cmd.id, cmd.request.unwrap()));
            }
        }
    }
    let want: Vec<_> = (0..40u32)
        .filter(|&id| id != 7)
        .map(|id| (id, Request::SetRate { rate_hz: 1000 + id }))
        .collect();
    assert_eq!(got, want);
    assert!(commands.bytes_skipped() > 0);
    assert!(!reader.read_ready().unwrap());
}
