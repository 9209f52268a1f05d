//! The first-hour API end to end on host memory: buffers split from one `static` array of
//! `Block`s, typed views, descriptors built from the array's shape (a forgotten `set_len` cannot
//! give a wrong one), buffers of different types in one message, `PublishError` as a value and
//! through `?`, and `WriteLink` (the `embedded_io::Write` adapter) as the link. Runs under miri,
//! which checks the views' `unsafe`.

use core::convert::Infallible;

use dmapickle_core::frame::{Body, BufferKind, Header, HEADER_LEN};
use dmapickle_core::{Descriptor, EncodeError, Pickler};
use dmapickle_hal::embedded_io;
use dmapickle_hal::{
    Block, DmaBuf, Either, Error, Outgoing, PublishError, Publisher, SharedRegion, WriteLink,
};
use static_cell::ConstStaticCell;

/// The wire as an `embedded_io::Write`, as a UART driver would be.
#[derive(Default)]
struct Wire(Vec<u8>);

impl embedded_io::ErrorType for Wire {
    type Error = Infallible;
}

impl embedded_io::Write for Wire {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

const SHAPE: [usize; 2] = [128, 4];

/// (header, entries, inline bytes) of the one frame in `wire`.
fn frame(wire: &[u8]) -> (Header, Vec<dmapickle_core::frame::Entry>, &[u8]) {
    let h = Header::decode(wire[..HEADER_LEN].try_into().unwrap()).unwrap();
    let body_end = HEADER_LEN + h.body_len() as usize;
    let body = Body::parse(&h, &wire[HEADER_LEN..body_end]).unwrap();
    let entries = body.entries().map(Result::unwrap).collect();
    let inline = &wire[body_end..body_end + h.inline_len as usize];
    assert_eq!(
        wire.len(),
        body_end + h.inline_len as usize + 4,
        "one frame"
    );
    (h, entries, inline)
}

/// The native bytes of `samples`, what the wire must carry.
fn bytes_of(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
}

#[test]
fn forgetting_set_len_cannot_produce_a_wrong_descriptor() {
    static BLOCKS: ConstStaticCell<[Block<1024>; 2]> = ConstStaticCell::new([Block::ZERO; 2]);
    let [mut buf, _] = DmaBuf::split(1, BLOCKS.take());
    let publisher = Publisher::new();
    let mut link = WriteLink::new(Wire::default());
    for (round, rows) in [(0i16, 128usize), (1, 64), (2, 128)] {
        let shape = [rows, 4];
        // Filled through the typed view; set_len is never called. In round 1 the length left
        // from round 0 (1024) is stale, in round 2 the one from round 1 (512) is.
        let samples = buf.as_mut_slice_of::<i16>().unwrap();
        assert_eq!(samples.len(), 512);
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (i as i16).wrapping_mul(37).wrapping_sub(round * 1000);
        }
        let desc = buf.array_descriptor::<i16>(&shape).unwrap().read_only();
        assert_eq!(desc.len as usize, rows * 4 * 2, "length from the shape");
        assert_eq!(
            buf.len(),
            desc.len as usize,
            "and it is what the buffer sends"
        );
        let mut out = [0u8; 96];
        let mut p = Pickler::new(&mut out);
        p.array::<i16>(desc, &shape).unwrap();
        let msg = p.finish().unwrap();
        let want = bytes_of(&buf.filled_of::<i16>().unwrap()[..rows * 4]);
        let sent = publisher
            .publish(
                &mut link,
                msg.pickle,
                &msg.descriptors,
                [Outgoing::Inline(buf)],
            )
            .unwrap();
        buf = sent.inline.into_iter().next().unwrap();
        let wire = std::mem::take(&mut link.get_mut().0);
        let (h, entries, inline) = frame(&wire);
        assert_eq!(h.seq, round as u32);
        assert_eq!(entries[0].descriptor, desc);
        assert_eq!(
            inline,
            &want[..],
            "round {round}: exactly the shape's samples"
        );
    }
}

#[test]
fn the_old_mistake_is_refused_not_sent() {
    // Filling the bytes and taking `descriptor()` without `set_len` gives length 0: the encoder
    // refuses it as an array (a run-time error, never a wrong pickle) ...
    static BLOCK: ConstStaticCell<Block<1024>> = ConstStaticCell::new(Block::ZERO);
    let mut buf = DmaBuf::from_block(1, 0, BLOCK.take());
    buf.as_mut_slice_of::<i16>().unwrap().fill(7);
    let mut out = [0u8; 96];
    let mut p = Pickler::new(&mut out);
    assert_eq!(
        p.array::<i16>(buf.descriptor(), &SHAPE),
        Err(EncodeError::ArraySizeMismatch)
    );
    // ... and a descriptor that no longer matches the buffer is refused before a byte is sent.
    let desc = buf.array_descriptor::<i16>(&SHAPE).unwrap();
    buf.set_len(10).unwrap();
    let mut link = WriteLink::new(Wire::default());
    let err = Publisher::new()
        .publish(
            &mut link,
            b"\x80\x05\x97.",
            &[desc],
            [Outgoing::Inline(buf)],
        )
        .unwrap_err();
    assert_eq!(err.error, Error::DescriptorMismatch { index: 0 });
    assert!(link.into_inner().0.is_empty());
    // An array that does not fit is an error, and the length stays as it was.
    let (_, _, mut inline) = err.into_parts();
    let mut buf = inline.pop().unwrap();
    assert_eq!(
        buf.array_descriptor::<i16>(&[129, 4]),
        Err(Error::BufferLength)
    );
    assert_eq!(
        buf.array_descriptor::<i16>(&[usize::MAX, 4]),
        Err(Error::BufferLength)
    );
    assert_eq!(buf.len(), 10);
}

#[test]
fn every_view_type_fits_a_block_and_misalignment_is_an_error() {
    static BLOCK: ConstStaticCell<Block<20>> = ConstStaticCell::new(Block::ZERO);
    let mut buf = DmaBuf::from_block(2, 0, BLOCK.take());
    assert_eq!(buf.as_mut_slice_of::<u8>().unwrap().len(), 20);
    assert_eq!(buf.as_mut_slice_of::<i16>().unwrap().len(), 10);
    assert_eq!(buf.as_mut_slice_of::<u32>().unwrap().len(), 5);
    assert_eq!(buf.as_mut_slice_of::<f32>().unwrap().len(), 5);
    assert_eq!(buf.as_mut_slice_of::<i64>().unwrap().len(), 2); // 4 trailing bytes left out
    buf.as_mut_slice_of::<f64>().unwrap()[1] = -2.5;
    buf.as_mut_slice_of::<u8>().unwrap()[16..].copy_from_slice(&[1, 2, 3, 4]);
    buf.set_len(20).unwrap();
    assert_eq!(buf.filled()[8..16], (-2.5f64).to_ne_bytes());
    assert_eq!(buf.filled_of::<u16>().unwrap().len(), 10);
    assert_eq!(
        buf.filled_of::<f64>(),
        Err(Error::BufferLength),
        "20 bytes are not whole f64s"
    );
    buf.set_len(16).unwrap();
    assert_eq!(buf.filled_of::<f64>().unwrap(), &[0.0, -2.5]);

    // A DmaBuf over plain bytes has no alignment guarantee: an odd address is refused.
    static BYTES: ConstStaticCell<Block<9>> = ConstStaticCell::new(Block::ZERO);
    let odd = &mut BYTES.take().0[1..];
    let mut plain = DmaBuf::new(3, 1, odd);
    assert_eq!(plain.as_mut_slice_of::<u8>().unwrap().len(), 8);
    assert_eq!(
        plain.as_mut_slice_of::<i16>().unwrap_err(),
        Error::BufferAlignment
    );
    assert_eq!(
        plain.array_descriptor::<u8>(&[8]).unwrap(),
        Descriptor::new(3, 1, 8)
    );
}

#[test]
fn split_gives_disjoint_buffers_at_their_offsets() {
    static BLOCKS: ConstStaticCell<[Block<12>; 3]> = ConstStaticCell::new([Block::ZERO; 3]);
    let mut bufs = DmaBuf::split(5, BLOCKS.take());
    // Block<12> is 16 bytes (8-byte aligned), so the offsets are 0, 16, 32.
    let offsets: Vec<u32> = bufs.iter().map(|b| b.descriptor().offset).collect();
    assert_eq!(offsets, [0, 16, 32]);
    for (i, b) in bufs.iter_mut().enumerate() {
        assert_eq!(b.capacity(), 12);
        b.as_mut_slice().fill(i as u8 + 1);
        b.set_len(12).unwrap();
    }
    for (i, b) in bufs.iter().enumerate() {
        assert!(
            b.filled().iter().all(|&x| x == i as u8 + 1),
            "buffer {i} untouched by the others"
        );
    }
    // Plain byte arrays split the same way.
    static RAW: ConstStaticCell<[[u8; 6]; 2]> = ConstStaticCell::new([[0; 6]; 2]);
    let raw = DmaBuf::split(1, RAW.take());
    assert_eq!(raw[1].descriptor(), Descriptor::new(1, 6, 0));
}

#[test]
fn buffers_of_different_types_go_out_in_one_message() {
    static BLOCK: ConstStaticCell<Block<16>> = ConstStaticCell::new(Block::ZERO);
    static TABLE: [u8; 3] = [0xCA, 0xFE, 0x01];
    #[repr(C, align(64))]
    struct Region([u8; 64 + 128]);
    static REGION: ConstStaticCell<Region> = ConstStaticCell::new(Region([0; 192]));
    let region = SharedRegion::new(2, &mut REGION.take().0, 128, 1).unwrap();

    let mut samples = DmaBuf::from_block(1, 0, BLOCK.take());
    samples
        .as_mut_slice_of::<f32>()
        .unwrap()
        .copy_from_slice(&[1.0, -1.0, 0.5, 2.0]);
    let mut slot = region.acquire().unwrap();
    slot.as_mut_slice_of::<u16>().unwrap()[..3].copy_from_slice(&[10, 20, 30]);
    let descriptors = [
        samples.array_descriptor::<f32>(&[4]).unwrap(),
        Descriptor::new(0, 0, 3).read_only(),
        slot.array_descriptor::<u16>(&[3]).unwrap(),
    ];
    let mut out = [0u8; 160];
    let mut p = Pickler::<3>::with_limits(&mut out);
    p.tuple(|p| {
        p.array::<f32>(descriptors[0], &[4])?;
        p.buffer(descriptors[1])?;
        p.array::<u16>(descriptors[2], &[3])
    })
    .unwrap();
    let msg = p.finish().unwrap();
    assert_eq!(msg.descriptors.as_slice(), &descriptors);

    type Buf = Either<DmaBuf, &'static [u8]>;
    let mut link = WriteLink::new(Wire::default());
    let sent = Publisher::new()
        .publish::<_, Buf, 3>(
            &mut link,
            msg.pickle,
            &msg.descriptors,
            [
                Outgoing::Inline(Either::Left(samples)),
                Outgoing::Inline(Either::Right(&TABLE[..])),
                Outgoing::Shared(slot),
            ],
        )
        .unwrap();
    let mut back = sent.inline.into_iter();
    let samples = back
        .next()
        .and_then(Either::left)
        .expect("the DmaBuf comes back first");
    assert_eq!(back.next().and_then(Either::right), Some(&TABLE[..]));
    assert!(
        back.next().is_none(),
        "the shared slot stays lent, not given back"
    );
    assert_eq!(region.lent(), 1);

    let wire = link.into_inner().0;
    let (_, entries, inline) = frame(&wire);
    let kinds: Vec<_> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [BufferKind::Inline, BufferKind::Inline, BufferKind::Shared]
    );
    assert_eq!(&inline[..16], samples.filled());
    assert_eq!(&inline[16..], &TABLE);
}

/// What a firmware's send function looks like with `?` all the way (the README's pattern).
fn send<L: dmapickle_hal::Link>(
    publisher: &Publisher,
    link: &mut L,
    buf: DmaBuf,
) -> Result<DmaBuf, Error> {
    let pickle = b"\x80\x05\x97.";
    let descriptors = [buf.descriptor()];
    let sent = publisher.publish(link, pickle, &descriptors, [Outgoing::Inline(buf)])?;
    sent.inline.into_iter().next().ok_or(Error::Link)
}

#[test]
fn publish_errors_display_convert_and_give_buffers_back() {
    static BLOCK: ConstStaticCell<Block<8>> = ConstStaticCell::new(Block::ZERO);
    let mut buf = DmaBuf::from_block(1, 0, BLOCK.take());
    buf.fill_from(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let publisher = Publisher::new();

    // A link that fails mid-frame: embedded-io's `&mut [u8]` writer with room for 30 of the
    // frame's 56 bytes (header 24, pickle 4, entry 12, body CRC 4, inline 8, data CRC 4).
    let mut small = [0u8; 30];
    let mut link = WriteLink::new(&mut small[..]);
    let descriptors = [buf.descriptor()];
    let err: PublishError<embedded_io::SliceWriteError, DmaBuf, 1> = publisher
        .publish(
            &mut link,
            b"\x80\x05\x97.",
            &descriptors,
            [Outgoing::Inline(buf)],
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "publishing failed: link write or transfer failed (Full)"
    );
    let (error, link_error, mut inline) = err.into_parts();
    assert_eq!(error, Error::Link);
    assert_eq!(link_error, Some(embedded_io::SliceWriteError::Full));
    let buf = inline.pop().expect("the buffer comes back");
    assert_eq!(buf.filled(), &[1, 2, 3, 4, 5, 6, 7, 8]);

    // `?` turns it into the crate error.
    let mut small = [0u8; 30];
    assert_eq!(
        send(&publisher, &mut WriteLink::new(&mut small[..]), buf).unwrap_err(),
        Error::Link
    );

    // A refusal displays its reason, and no link error.
    static OTHER: ConstStaticCell<Block<8>> = ConstStaticCell::new(Block::ZERO);
    let other = DmaBuf::from_block(1, 0, OTHER.take());
    let err = publisher
        .publish(
            &mut WriteLink::new(Wire::default()),
            b"\x80\x05N.",
            &[],
            [Outgoing::Inline(other)],
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "publishing failed: 0 descriptors but 1 buffers"
    );
    assert!(err.link.is_none());

    // And with a link that works, the same function sends and gives the buffer back.
    static LAST: ConstStaticCell<Block<8>> = ConstStaticCell::new(Block::ZERO);
    let mut last = DmaBuf::from_block(1, 0, LAST.take());
    last.fill_from(&[9; 3]).unwrap();
    let mut link = WriteLink::new(Wire::default());
    let last = send(&publisher, &mut link, last).unwrap();
    assert_eq!(last.filled(), &[9; 3]);
    assert_eq!(frame(&link.into_inner().0).2, &[9; 3]);
}
