//! The device side end to end on host memory: publisher framing, inline transfers, shared-region
//! lending and releases through the ring. Runs under miri (`cargo +nightly miri test`), which
//! checks the hal's unsafe code; the file-mapping test is left out there (miri cannot `mmap`).
#![cfg(feature = "std")]

use dmapickle_core::frame::{Body, BufferKind, Header, HEADER_LEN};
use dmapickle_core::release::Release;
use dmapickle_hal::ring::HostEnd;
use dmapickle_hal::{io::IoLink, DmaBuf, Error, Outgoing, Publisher, SharedRegion};

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

/// 64-byte aligned `'static` memory of `n` bytes, and its base pointer.
fn leak_aligned(n: usize) -> &'static mut [u8] {
    let mem = leak(n + 64);
    let skew = (64 - mem.as_ptr() as usize % 64) % 64;
    &mut mem[skew..skew + n]
}

fn parse(frame: &[u8]) -> (Header, Body<'_>, &[u8]) {
    let h = Header::decode(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
    let body_end = HEADER_LEN + h.body_len() as usize;
    let body = Body::parse(&h, &frame[HEADER_LEN..body_end]).unwrap();
    (h, body, &frame[body_end..])
}

#[test]
fn inline_frames_count_up_and_give_buffers_back() {
    let publisher = Publisher::starting_at(u32::MAX);
    let mut link = IoLink::new(Vec::new());
    let mut a = DmaBuf::new(1, 0, leak(8));
    let mut b = DmaBuf::new(1, 8, leak(8));
    for round in 0..3u8 {
        a.fill_from(&[round; 5]).unwrap();
        b.fill_from(&[round + 100; 3]).unwrap();
        let d = [a.descriptor(), b.descriptor().read_only()];
        let sent = publisher
            .publish(
                &mut link,
                b"\x80\x05\x97\x97\x86.",
                &d,
                [Outgoing::Inline(a), Outgoing::Inline(b)],
            )
            .unwrap();
        let mut back = sent.inline.into_iter();
        a = back.next().unwrap();
        b = back.next().unwrap();
    }
    let bytes = link.into_inner();
    let mut rest = &bytes[..];
    for (i, want_seq) in [u32::MAX, 0, 1].into_iter().enumerate() {
        let (h, body, tail) = parse(rest);
        assert_eq!(h.seq, want_seq);
        assert_eq!(h.seq_restart(), i == 0);
        let entries: Vec<_> = body.entries().map(Result::unwrap).collect();
        assert!(entries.iter().all(|e| e.kind == BufferKind::Inline));
        assert!(entries[1].descriptor.readonly);
        let r = i as u8;
        assert_eq!(&tail[..8], &[r, r, r, r, r, r + 100, r + 100, r + 100]);
        rest = &tail[h.inline_len as usize + 4..];
    }
    assert!(rest.is_empty());
}

#[test]
fn mismatched_buffers_are_refused_and_returned() {
    let publisher = Publisher::new();
    let mut link = IoLink::new(Vec::new());
    let mut a = DmaBuf::new(1, 0, leak(8));
    a.fill_from(&[1, 2, 3]).unwrap();
    let wrong = [dmapickle_core::Descriptor::new(1, 0, 4)];
    let err = publisher
        .publish(&mut link, b"\x80\x05\x97.", &wrong, [Outgoing::Inline(a)])
        .unwrap_err();
    assert_eq!(err.error, Error::DescriptorMismatch { index: 0 });
    assert_eq!(err.inline.len(), 1);
    let err = publisher
        .publish(
            &mut link,
            b"\x80\x05\x97.",
            &[],
            [Outgoing::Inline(err.inline.into_iter().next().unwrap())],
        )
        .unwrap_err();
    assert_eq!(
        err.error,
        Error::BufferCount {
            descriptors: 0,
            buffers: 1
        }
    );
    assert!(
        link.into_inner().is_empty(),
        "nothing written for a refused message"
    );
    assert_eq!(publisher.next_seq(), 0, "no sequence number spent");
}

#[test]
fn shared_slot_is_not_reused_before_its_release() {
    let len = 64 + 2 * 256;
    let base = leak_aligned(len).as_mut_ptr();
    // Device and host both reach the memory through this one raw pointer, as with PSRAM at a
    // fixed address. SAFETY: the memory is leaked ('static) and only used through the region
    // and the host's ring.
    let region = unsafe { SharedRegion::from_raw_parts(3, base, len, 256, 2) }.unwrap();
    // SAFETY: the region's memory is leaked ('static); this is the host's half of the ring.
    let host = unsafe { HostEnd::attach(base, len) }.unwrap();
    let publisher = Publisher::new();
    let mut link = IoLink::new(Vec::new());
    let mut lent = Vec::new();
    for i in 0..2u8 {
        let mut s = region.acquire().unwrap();
        s.fill_from(&[i; 100]).unwrap();
        let d = [s.descriptor()];
        lent.push(d[0]);
        publisher
            .publish::<_, DmaBuf, 1>(&mut link, b"\x80\x05\x97.", &d, [Outgoing::Shared(s)])
            .unwrap();
    }
    assert_eq!(region.lent(), 2);
    assert!(
        region.acquire().is_none(),
        "both slots lent: nothing to write"
    );
    // The host releases the second buffer only: exactly that slot comes back.
    host.post(Release {
        offset: lent[1].offset,
        len: lent[1].len,
    })
    .unwrap();
    let mut again = region.acquire().unwrap();
    assert_eq!(again.descriptor().offset, lent[1].offset);
    again.fill_from(&[7; 10]).unwrap();
    assert!(region.acquire().is_none(), "first slot still the host's");
    // The first buffer's bytes were never touched while lent.
    // SAFETY: reading the lent slot as the host does; the device holds no handle to it.
    let first = unsafe { std::slice::from_raw_parts(base.add(lent[0].offset as usize), 100) };
    assert!(first.iter().all(|&b| b == 0));
    // A release naming no lent slot is counted, not obeyed.
    host.post(Release { offset: 5, len: 1 }).unwrap();
    region.poll_releases();
    assert_eq!(region.stray_releases(), 1);
    drop(again);
    assert_eq!(region.free(), 1);
    let bytes = link.into_inner();
    let (_, body, tail) = parse(&bytes);
    let e = body.entries().next().unwrap().unwrap();
    assert_eq!(e.kind, BufferKind::Shared);
    assert_eq!(e.descriptor, lent[0]);
    assert_eq!(
        &tail[..4],
        &[0, 0, 0, 0],
        "no inline bytes, data CRC of nothing"
    );
}

#[test]
#[cfg_attr(miri, ignore = "miri cannot mmap a file")]
fn file_region_is_seen_by_a_second_mapping() {
    use dmapickle_hal::file_region::FileRegion;
    let path = std::env::temp_dir().join(format!("dmapickle-hal-test-{}", std::process::id()));
    let fr = FileRegion::create(&path, 4, 1 << 16, 4096, 16).unwrap();
    let mut s = fr.region().acquire().unwrap();
    s.fill_from(b"hello").unwrap();
    let off = s.descriptor().offset as usize;
    drop(s);
    let seen = std::fs::read(&path).unwrap();
    assert_eq!(&seen[..4], b"DPRL");
    assert_eq!(&seen[off..off + 5], b"hello");
    drop(fr);
    std::fs::remove_file(&path).unwrap();
}
