//! Shared-region round trip through a mapped file: the device (hal `FileRegion` + `Publisher`)
//! lends buffers in a file both sides map; the host delivers views of the mapping and releases
//! each buffer through the ring when its last view is dropped. The host keeps the last few
//! messages alive and checks, when it finally drops each, that its bytes never changed: the
//! device did not reuse a slot before its release, although it was always waiting for one.

use std::collections::VecDeque;
use std::path::PathBuf;

use dmapickle_core::frame::BufferKind;
use dmapickle_core::Descriptor;
use dmapickle_hal::file_region::FileRegion;
use dmapickle_hal::io::IoLink;
use dmapickle_hal::{DmaBuf, Outgoing, Publisher};
use dmapickle_host::region::RegionMap;
use dmapickle_host::{FrameReader, Message};

const COUNT: u32 = 2_000;
const SLOTS: usize = 4;
const SLOT_LEN: usize = 4096;
const HELD: usize = SLOTS - 1;

fn region_path(tag: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("dmapickle-{tag}-{}", std::process::id()))
}

/// The bytes of message `i`'s shared buffer: a length and a pattern unique to `i`.
fn pattern(i: u32) -> Vec<u8> {
    let len = 1 + (i as usize * 7919) % SLOT_LEN;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn check(m: &Message) {
    let i = m.seq;
    assert_eq!(m.buffers.len(), 2);
    assert_eq!(m.buffers[0].kind, BufferKind::Shared);
    assert_eq!(
        &m.buffers[0].data[..],
        &pattern(i)[..],
        "shared buffer of message {i}"
    );
    assert_eq!(m.buffers[1].kind, BufferKind::Inline);
    assert_eq!(&m.buffers[1].data[..], &i.to_le_bytes());
}

#[test]
fn shared_buffers_are_released_and_never_reused_early() {
    let path = region_path("shared-test");
    let len = 64 + SLOTS * SLOT_LEN;
    let device_region = FileRegion::create(&path, 7, len, SLOT_LEN, 4).unwrap();
    assert_eq!(device_region.region().slots(), SLOTS);
    let mut regions = RegionMap::new();
    let host_region = regions.open(7, &path).unwrap();

    let (rx, tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let device = std::thread::spawn(move || {
        let region = device_region.region();
        let publisher = Publisher::new();
        let mut link = IoLink::new(tx);
        let mut counter = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 4])));
        let mut waits = 0u64;
        for i in 0..COUNT {
            let mut slot = loop {
                match region.acquire() {
                    Some(s) => break s,
                    None => {
                        waits += 1;
                        std::thread::yield_now();
                    }
                }
            };
            slot.fill_from(&pattern(i)).unwrap();
            counter.fill_from(&i.to_le_bytes()).unwrap();
            let d = [slot.descriptor().read_only(), counter.descriptor()];
            // {"x": NEXT_BUFFER READONLY_BUFFER, "n": NEXT_BUFFER}
            let pickle = b"\x80\x05}(\x8c\x01x\x97\x98\x8c\x01n\x97u.";
            let sent = publisher
                .publish(
                    &mut link,
                    pickle,
                    &d,
                    [Outgoing::Shared(slot), Outgoing::Inline(counter)],
                )
                .unwrap();
            counter = sent.inline.into_iter().next().unwrap();
        }
        drop(link);
        // Wait for the host's last releases, then report.
        while region.lent() > 0 {
            region.poll_releases();
            std::thread::yield_now();
        }
        (waits, region.stray_releases())
    });

    let mut reader = FrameReader::new(rx).with_regions(regions);
    let mut held: VecDeque<(Message, Vec<u8>)> = VecDeque::new();
    let mut n = 0u32;
    while let Some(m) = reader.next_message().unwrap() {
        assert_eq!(m.seq, n);
        check(&m);
        let snapshot = m.buffers[0].data.to_vec();
        held.push_back((m, snapshot));
        if held.len() > HELD {
            let (old, snapshot) = held.pop_front().unwrap();
            // Still exactly what the device wrote, after the device published up to 3 more
            // messages and waited for slots meanwhile.
            assert_eq!(
                &old.buffers[0].data[..],
                &snapshot[..],
                "slot reused before release"
            );
            check(&old);
        }
        n += 1;
    }
    assert_eq!(n, COUNT);
    for (m, snapshot) in held.drain(..) {
        assert_eq!(&m.buffers[0].data[..], &snapshot[..]);
    }
    let stats = host_region.stats();
    let (waits, stray) = device.join().unwrap();
    println!(
        "shared: {COUNT} messages, device waited {waits} times for a release, stats {stats:?}"
    );
    assert_eq!(stats.posted, u64::from(COUNT));
    assert_eq!((stats.outstanding, stats.pending), (0, 0));
    assert_eq!(stray, 0);
    assert!(
        waits > 0,
        "the host held buffers, so the device must have waited"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn shared_descriptor_outside_the_region_is_refused() {
    let path = region_path("shared-bounds");
    let device_region = FileRegion::create(&path, 7, 64 + 4096, 4096, 4).unwrap();
    let mut regions = RegionMap::new();
    regions.open(7, &path).unwrap();
    let mut frames = Vec::new();
    for (seq, d) in [
        Descriptor::new(7, 16, 8),     // over the control block
        Descriptor::new(7, 4000, 200), // past the end
        Descriptor::new(9, 64, 8),     // unmapped region
    ]
    .into_iter()
    .enumerate()
    {
        let mut out = vec![0u8; 128];
        let entries = [dmapickle_core::frame::Entry::shared(d)];
        let n = dmapickle_core::frame::write_frame(
            &mut out,
            0,
            seq as u32,
            b"\x80\x05\x97.",
            &entries,
            &[],
        )
        .unwrap();
        frames.extend_from_slice(&out[..n]);
    }
    let mut reader = FrameReader::new(&frames[..]).with_regions(regions);
    for _ in 0..3 {
        let e = reader.next_message().unwrap_err();
        assert!(!e.is_fatal());
        println!("refused as it should: {e}");
    }
    assert!(reader.next_message().unwrap().is_none());
    assert_eq!(reader.counters().refused, 3);
    drop(device_region);
    std::fs::remove_file(&path).unwrap();
}
