// DMA needs `'static` memory: a stack buffer could be freed while the transfer runs.
use dmapickle_hal::{io::IoLink, Link, Transfer};

fn main() {
    let mut link = IoLink::new(Vec::new());
    let mut local = [0u8; 8];
    let transfer = link.transfer(&mut local[..]); // must not compile
    let _ = transfer.wait();
}
