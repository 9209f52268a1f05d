//! The async publisher on host memory: the same frame bytes as the blocking path, borrowed
//! inline buffers, link errors, and a future dropped mid-frame, after which the next frame is
//! still found by a reader that hunts as `docs/wire-format.md` says ("Hunting and the order of
//! checks": after a corrupt frame, re-scan from the byte after its sync word).
#![cfg(all(feature = "std", feature = "async"))]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use dmapickle_core::frame::{crc32c, Body, Header, HEADER_LEN, SYNC};
use dmapickle_core::Descriptor;
use dmapickle_hal::{io::IoLink, DmaBuf, Error, Outgoing, Publisher, SharedRegion};
use embassy_futures::block_on;

const PICKLE: &[u8] = b"\x80\x05\x97\x97\x86.";

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

fn bufs(round: u8) -> (DmaBuf, DmaBuf) {
    let mut a = DmaBuf::new(1, 0, leak(64));
    let mut b = DmaBuf::new(1, 64, leak(64));
    a.fill_from(&[round; 40]).unwrap();
    b.fill_from(&[round ^ 0xFF; 24]).unwrap();
    (a, b)
}

fn descriptors(a: &DmaBuf, b: &DmaBuf) -> [Descriptor; 2] {
    [a.descriptor(), b.descriptor().read_only()]
}

/// Frames found by hunting: (stream offset, seq, inline bytes) of each frame whose header,
/// body and data CRCs hold, and the number of corrupt frames passed over.
fn hunt(stream: &[u8]) -> (Vec<(usize, u32, Vec<u8>)>, usize) {
    let (mut frames, mut corrupt, mut at) = (Vec::new(), 0, 0);
    while let Some(h) = stream[at..]
        .windows(4)
        .position(|w| w == SYNC)
        .map(|p| p + at)
    {
        let frame = |h: usize| -> Option<(usize, u32, Vec<u8>)> {
            let header = Header::decode(stream.get(h..h + HEADER_LEN)?.try_into().ok()?).ok()?;
            let body_end = h + HEADER_LEN + header.body_len() as usize;
            Body::parse(&header, stream.get(h + HEADER_LEN..body_end)?).ok()?;
            let data_end = body_end + header.inline_len as usize;
            let data = stream.get(body_end..data_end)?;
            let crc = stream.get(data_end..data_end + 4)?;
            (crc32c(data).to_le_bytes() == crc).then(|| (data_end + 4, header.seq, data.to_vec()))
        };
        match frame(h) {
            Some((end, seq, data)) => {
                frames.push((h, seq, data));
                at = end;
            }
            None => {
                let is_header = stream
                    .get(h..h + HEADER_LEN)
                    .is_some_and(|b| Header::decode(b.try_into().unwrap()).is_ok());
                corrupt += usize::from(is_header);
                at = h + 1;
            }
        }
    }
    (frames, corrupt)
}

/// An `embedded-io-async` writer that takes `budget` bytes, then is never ready again (a
/// congested socket), or fails (`fail`).
struct Choked {
    wire: Vec<u8>,
    budget: usize,
    fail: bool,
}

#[derive(Debug, PartialEq)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken pipe")
    }
}

impl std::error::Error for Broken {}

impl embedded_io_async::Error for Broken {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::BrokenPipe
    }
}

impl embedded_io_async::ErrorType for Choked {
    type Error = Broken;
}

impl embedded_io_async::Write for Choked {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Broken> {
        let n = bytes.len().min(self.budget);
        if n == 0 && !bytes.is_empty() {
            if self.fail {
                return Err(Broken);
            }
            std::future::pending::<()>().await;
        }
        self.wire.extend_from_slice(&bytes[..n]);
        self.budget -= n;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Broken> {
        Ok(())
    }
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls `fut` until it stops making progress; `true` if it completed.
fn poll_a_while<F: Future>(fut: F) -> bool {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    (0..100).any(|_| fut.as_mut().poll(&mut cx).is_ready())
}

#[test]
fn async_frames_are_byte_for_byte_the_blocking_ones() {
    for crc in [true, false] {
        let make = || {
            let p = Publisher::starting_at(u32::MAX);
            if crc {
                p
            } else {
                p.without_data_crc()
            }
        };
        let (blocking, asynch) = (make(), make());
        let mut link = IoLink::new(Vec::new());
        let mut wire: Vec<u8> = Vec::new();
        for round in 0..3u8 {
            let (a, b) = bufs(round);
            let d = descriptors(&a, &b);
            let sent = block_on(asynch.publish_async(
                &mut wire,
                PICKLE,
                &d,
                [Outgoing::Inline(&a), Outgoing::Inline(&b)],
            ))
            .unwrap();
            assert_eq!(sent.seq, u32::MAX.wrapping_add(u32::from(round)));
            assert!(std::ptr::eq(sent.inline[0], &a) && std::ptr::eq(sent.inline[1], &b));
            drop(sent);
            blocking
                .publish(
                    &mut link,
                    PICKLE,
                    &d,
                    [Outgoing::Inline(a), Outgoing::Inline(b)],
                )
                .unwrap();
        }
        assert_eq!(
            block_on(asynch.publish_pickle_async(&mut wire, b"\x80\x05N.")),
            Ok(2)
        );
        assert_eq!(blocking.publish_pickle(&mut link, b"\x80\x05N."), Ok(2));
        assert_eq!(wire, link.into_inner(), "data crc {crc}");
    }
}

#[test]
fn a_future_dropped_mid_frame_leaves_a_cut_frame_the_next_one_survives() {
    // Cut frame 1 in its header, pickle, descriptor table, body CRC, first and second buffer
    // and data CRC, and before its first byte.
    let frame_len = 24 + PICKLE.len() + 2 * 12 + 4 + 64 + 4;
    for cut in [0, 1, 10, 23, 26, 40, 57, 60, 80, 100, frame_len - 1] {
        let publisher = Publisher::new();
        let mut link = Choked {
            wire: Vec::new(),
            budget: usize::MAX,
            fail: false,
        };
        let (mut a, mut b) = bufs(0);
        let d = descriptors(&a, &b);
        let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
        block_on(publisher.publish_async(&mut link, PICKLE, &d, inline)).unwrap();
        let first_len = link.wire.len();
        assert_eq!(first_len, frame_len);

        link.budget = cut;
        let d = descriptors(&a, &b);
        let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
        let done = poll_a_while(publisher.publish_async(&mut link, PICKLE, &d, inline));
        assert!(
            !done,
            "cut {cut}: the choked link never completes the frame"
        );
        // The future is gone: the buffers are the caller's, and writable again.
        assert_eq!(link.wire.len(), first_len + cut);
        a.fill_from(&[2; 40]).unwrap();
        b.fill_from(&[0xFD; 24]).unwrap();

        link.budget = usize::MAX;
        let d = descriptors(&a, &b);
        let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
        let sent = block_on(publisher.publish_async(&mut link, PICKLE, &d, inline)).unwrap();
        assert_eq!(sent.seq, 2, "the cut frame spent seq 1");

        let (frames, corrupt) = hunt(&link.wire);
        let seqs: Vec<u32> = frames.iter().map(|f| f.1).collect();
        assert_eq!(seqs, [0, 2], "cut {cut}");
        assert_eq!(
            frames[1].0,
            first_len + cut,
            "the next frame starts right after the cut"
        );
        let mut want = vec![2u8; 40];
        want.extend([0xFD; 24]);
        assert_eq!(frames[1].2, want);
        assert_eq!(corrupt, usize::from(cut >= HEADER_LEN), "cut {cut}");
    }
}

#[test]
fn a_link_error_gives_the_buffers_back_and_the_next_frame_goes_out() {
    let publisher = Publisher::new();
    let mut link = Choked {
        wire: Vec::new(),
        budget: 50,
        fail: true,
    };
    let (a, b) = bufs(7);
    let d = descriptors(&a, &b);
    let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
    let err = block_on(publisher.publish_async(&mut link, PICKLE, &d, inline)).unwrap_err();
    assert_eq!((err.error, err.link), (Error::Link, Some(Broken)));
    assert!(std::ptr::eq(err.inline[0], &a) && std::ptr::eq(err.inline[1], &b));
    link.budget = usize::MAX;
    let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
    block_on(publisher.publish_async(&mut link, PICKLE, &d, inline)).unwrap();
    let (frames, corrupt) = hunt(&link.wire);
    assert_eq!((frames.len(), frames[0].1, corrupt), (1, 1, 1));
}

#[test]
fn mismatched_buffers_are_refused_before_a_byte_is_written() {
    let publisher = Publisher::new();
    let mut wire: Vec<u8> = Vec::new();
    let (a, b) = bufs(1);
    let wrong = [a.descriptor(), Descriptor::new(1, 64, 25)];
    let inline = [Outgoing::Inline(&a), Outgoing::Inline(&b)];
    let err = block_on(publisher.publish_async(&mut wire, PICKLE, &wrong, inline)).unwrap_err();
    assert_eq!(err.error, Error::DescriptorMismatch { index: 1 });
    assert_eq!(err.inline.len(), 2);
    assert!(wire.is_empty());
    assert_eq!(
        publisher.next_seq(),
        0,
        "a refused message spends no sequence number"
    );
}

#[test]
fn shared_buffers_lent_by_a_dropped_future_stay_lent() {
    let mem = leak(4096 + 64);
    let skew = (64 - mem.as_ptr() as usize % 64) % 64;
    let region = SharedRegion::new(2, &mut mem[skew..skew + 4096], 1024, 4).unwrap();
    let mut s = region.acquire().unwrap();
    s.fill_from(&[9; 100]).unwrap();
    let d = [s.descriptor()];
    let publisher = Publisher::new();
    let mut link = Choked {
        wire: Vec::new(),
        budget: 30,
        fail: false,
    };
    let shared = [Outgoing::<&DmaBuf>::Shared(s)];
    assert!(!poll_a_while(
        publisher.publish_async(&mut link, PICKLE, &d, shared)
    ));
    assert_eq!(
        region.lent(),
        1,
        "the host may have seen the descriptor: lent until released"
    );
    assert_eq!(region.free(), region.slots() - 1);
}
