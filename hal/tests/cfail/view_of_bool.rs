// A typed view needs an element type every bit pattern is a value of: `bool` is not one (a DMA
// peripheral or the host may leave any byte there). The error says which types work and how to
// send booleans instead.
use dmapickle_hal::{Block, DmaBuf};
use static_cell::ConstStaticCell;

static BLOCK: ConstStaticCell<Block<64>> = ConstStaticCell::new(Block::ZERO);

fn main() {
    let mut buf = DmaBuf::from_block(1, 0, BLOCK.take());
    let flags = buf.as_mut_slice_of::<bool>().unwrap(); // must not compile
    flags[0] = true;
}
