// A SharedBuf published to the host cannot be written again: only a fresh `acquire` after the
// host's release gives a writable slot.
use dmapickle_hal::{io::IoLink, Outgoing, Publisher, SharedRegion};

fn main() {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let region = SharedRegion::new(2, mem, 1024, 4).unwrap();
    let publisher = Publisher::new();
    let mut link = IoLink::new(Vec::new());
    let mut buf = region.acquire().unwrap();
    buf.fill_from(&[1, 2, 3]).unwrap();
    let d = [buf.descriptor()];
    let _ = publisher.publish::<_, &'static [u8], 1>(&mut link, b"\x80\x05\x97.", &d, [Outgoing::Shared(buf)]);
    buf.fill_from(&[4, 5, 6]).unwrap(); // lent to the host: must not compile
}
