// A shared buffer published by `publish_async` is the host's: the device cannot write it again,
// even if the future is dropped before the frame is out.
use dmapickle_hal::{DmaBuf, Outgoing, Publisher, SharedRegion};

fn main() {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let region = SharedRegion::new(2, mem, 1024, 4).unwrap();
    let mut buf = region.acquire().unwrap();
    buf.fill_from(&[1, 2, 3]).unwrap();
    let d = [buf.descriptor()];
    let publisher = Publisher::new();
    let mut wire: Vec<u8> = Vec::new();
    let publishing =
        publisher.publish_async(&mut wire, b"\x80\x05\x97.", &d, [Outgoing::<&DmaBuf>::Shared(buf)]);
    drop(publishing);
    buf.as_mut_slice()[0] = 9; // lent to the host: must not compile
}
