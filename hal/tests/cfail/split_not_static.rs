// DMA memory must be `'static` (a transfer leaked with `mem::forget` keeps reading it): a local
// array cannot become DmaBufs. The error points at the `'static` requirement; the fix is a
// `static` array handed out once (static_cell::ConstStaticCell, cortex_m::singleton!).
use dmapickle_hal::{Block, DmaBuf};

fn main() {
    let mut blocks = [Block::<64>::ZERO; 2];
    let bufs = DmaBuf::split(1, &mut blocks); // must not compile
    drop(bufs);
}
