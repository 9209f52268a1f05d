// A DmaBuf handed to a transfer cannot be written until `wait` gives it back.
use dmapickle_hal::{io::IoLink, DmaBuf, Link, Transfer};

fn main() {
    let mut link = IoLink::new(Vec::new());
    let mut buf = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 8])));
    buf.fill_from(&[1, 2, 3]).unwrap();
    let transfer = link.transfer(buf);
    buf.as_mut_slice()[0] = 9; // in flight: must not compile
    let _ = transfer.wait();
}
