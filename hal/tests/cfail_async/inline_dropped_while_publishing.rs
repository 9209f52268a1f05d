// An inline buffer cannot be dropped (its memory handed to someone else) while a
// `publish_async` future borrows it.
use dmapickle_hal::{DmaBuf, Outgoing, Publisher};

fn main() {
    let publisher = Publisher::new();
    let mut wire: Vec<u8> = Vec::new();
    let mut buf = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 8])));
    buf.fill_from(&[1, 2, 3]).unwrap();
    let d = [buf.descriptor()];
    let publishing = publisher.publish_async(&mut wire, b"\x80\x05\x97.", &d, [Outgoing::Inline(&buf)]);
    drop(buf); // still borrowed: must not compile
    let _ = embassy_futures::block_on(publishing);
}
