// A `&mut` into a DmaBuf cannot be kept across publishing it.
use dmapickle_hal::{io::IoLink, DmaBuf, Outgoing, Publisher};

fn main() {
    let publisher = Publisher::new();
    let mut link = IoLink::new(Vec::new());
    let mut buf = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 8])));
    buf.fill_from(&[1, 2, 3]).unwrap();
    let d = [buf.descriptor()];
    let bytes = buf.as_mut_slice();
    let _ = publisher.publish(&mut link, b"\x80\x05\x97.", &d, [Outgoing::Inline(buf)]);
    bytes[0] = 9; // the DMA engine may be reading it: must not compile
}
