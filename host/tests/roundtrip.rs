//! Round trip at scale: the device code (hal `Publisher`, std build) publishes 10,000 messages
//! with random numpy dtypes and shapes through a real OS socketpair from a writer thread; the
//! host reader delivers all of them in order and byte-identical, and one CPython process with
//! numpy 2 (and one with numpy 1.26) loads every one with `pickle.loads(pickle, buffers=...)`
//! and reports dtype, shape, a CRC of the array's bytes and whether the array is a zero-copy view
//! of its buffer.

mod common;

use common::{check_message, expected_line, spec, Device, PythonLoader};
use dmapickle_core::Profile;
use dmapickle_hal::io::IoLink;
use dmapickle_host::validation::Checker;
use dmapickle_host::{FrameReader, ReadError};

const SEED: u64 = 0xD15E_A5E5;
const COUNT: u32 = 10_000;

#[test]
fn ten_thousand_messages_through_a_socketpair_into_cpython() {
    let (rx, tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let mut device = Device::new();
        let mut link = IoLink::new(tx);
        for i in 0..COUNT {
            let seq = device.publish(&mut link, i, &spec(SEED, i, 200));
            assert_eq!(seq, i);
        }
    });
    let mut reader = FrameReader::new(rx).with_checker(Checker::new(Profile::Strict));
    let mut python = PythonLoader::spawn(false);
    let mut python1 = PythonLoader::spawn(true);
    let mut expected = Vec::with_capacity(COUNT as usize);
    let mut bytes = 0usize;
    for i in 0..COUNT {
        let m = reader
            .next_message()
            .unwrap_or_else(|e| panic!("message {i}: {e}"))
            .unwrap_or_else(|| panic!("stream ended after {i} messages"));
        assert_eq!(m.seq, i, "in order, none lost");
        assert_eq!(m.restart, i == 0);
        let arrays = spec(SEED, i, 200);
        check_message(&m, i, &arrays);
        bytes += m.buffers.iter().map(|b| b.data.len()).sum::<usize>();
        python.send(&m);
        python1.send(&m);
        expected.push(expected_line(i, &arrays));
    }
    writer.join().unwrap();
    assert!(reader.next_message().unwrap().is_none());
    let c = reader.counters();
    println!("round trip: {COUNT} messages, {bytes} buffer bytes, counters {c:?}");
    assert_eq!(c.frames_ok, u64::from(COUNT));
    assert_eq!(
        (c.corrupt, c.lost, c.bytes_skipped, c.refused),
        (0, 0, 0, 0)
    );

    for loader in [python, python1] {
        let lines = loader.finish();
        let (done, answers) = lines.split_last().expect("Python printed nothing");
        println!("CPython: {done}");
        assert!(done.ends_with(" done"), "{done}");
        assert_eq!(answers.len(), COUNT as usize);
        for (i, (got, want)) in answers.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "message {i} as CPython ({done}) loaded it");
        }
    }
}

#[test]
fn a_hostile_pickle_is_refused_and_the_next_frame_still_arrives() {
    use dmapickle_core::frame::write_frame;
    let mut stream = vec![0u8; 256];
    // os.system('id'): an intact frame whose pickle the validator must refuse.
    let hostile = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
    let n = write_frame(&mut stream, 1, 0, hostile, &[], &[]).unwrap();
    let m = write_frame(&mut stream[n..], 0, 1, b"\x80\x05K\x07.", &[], &[]).unwrap();
    stream.truncate(n + m);
    let mut reader = FrameReader::new(&stream[..]).with_checker(Checker::new(Profile::Strict));
    match reader.next_message() {
        // The refusal is data: STACK_GLOBAL at byte 14 of the pickle (pickletools.dis says
        // `14: \x93 STACK_GLOBAL`), the global it named, no bound involved.
        Err(ReadError::Invalid {
            seq: 0,
            offset: 0,
            rejected,
        }) => {
            assert_eq!(rejected.offset(), Some(14));
            assert_eq!(rejected.opcode(), Some(0x93));
            assert_eq!(rejected.opcode_name(), Some("STACK_GLOBAL"));
            assert_eq!(
                rejected.reason(),
                Some(dmapickle_core::Reason::GlobalNotAllowed)
            );
            assert_eq!(rejected.global(), Some(("os", "system")));
            assert_eq!(rejected.limit(), None);
        }
        other => panic!("hostile pickle not refused: {other:?}"),
    }
    let ok = reader.next_message().unwrap().unwrap();
    assert_eq!((ok.seq, &ok.pickle[..]), (1, &b"\x80\x05K\x07."[..]));
    let c = reader.counters();
    assert_eq!((c.frames_ok, c.refused, c.lost), (1, 1, 0));
}

#[test]
fn a_pickle_over_a_bound_is_refused_with_the_limit_as_data() {
    use dmapickle_core::frame::write_frame;
    use dmapickle_core::validate::{Limit, Limits};
    // [[[[]]]], protocol 4 (pickletools.dis: 0 PROTO, 2-5 EMPTY_LIST, 6-8 APPEND, 9 STOP);
    // the nesting limit is 2.
    let deep = b"\x80\x04]]]]aaa.";
    let mut stream = vec![0u8; 128];
    let n = write_frame(&mut stream, 1, 7, deep, &[], &[]).unwrap();
    stream.truncate(n);
    let mut checker = Checker::new(Profile::General);
    checker.limits(Limits {
        max_depth: 2,
        ..Limits::DEFAULT
    });
    let mut reader = FrameReader::new(&stream[..]).with_checker(checker);
    let e = reader
        .next_message()
        .expect_err("a pickle over max_depth is refused");
    assert!(matches!(e, ReadError::Invalid { seq: 7, .. }), "{e:?}");
    let rejected = e.rejection().expect("refused by the validator");
    // The APPEND at byte 7 puts [[]] into a list: depth 3, over the limit of 2.
    assert_eq!(rejected.limit(), Some((Limit::Depth, 3, 2)));
    assert_eq!(rejected.offset(), Some(7));
    assert_eq!(rejected.opcode_name(), Some("APPEND"));
    assert_eq!(
        rejected.to_string(),
        "byte 7, APPEND: nesting depth 3 exceeds the limit 2 (--max-depth)"
    );
}
