// A typed view of a DmaBuf cannot be kept across publishing the buffer: the transfer owns it.
use dmapickle_hal::{io::IoLink, Block, DmaBuf, Outgoing, Publisher};
use static_cell::ConstStaticCell;

static BLOCK: ConstStaticCell<Block<1024>> = ConstStaticCell::new(Block::ZERO);

fn main() {
    let mut buf = DmaBuf::from_block(1, 0, BLOCK.take());
    let d = [buf.array_descriptor::<i16>(&[128, 4]).unwrap()];
    let samples = buf.as_mut_slice_of::<i16>().unwrap();
    samples[0] = 1;
    let mut link = IoLink::new(Vec::new());
    let _ = Publisher::new().publish(&mut link, b"\x80\x05\x97.", &d, [Outgoing::Inline(buf)]);
    samples[1] = 2; // the DMA engine may be reading it: must not compile
}
