//! A driver for the SMSC LAN9118 Ethernet controller of mps2-an386 (0x4020_0000, IRQ 13),
//! implementing `embassy-net-driver`. Written against QEMU's model (`hw/net/lan9118.c`), which
//! is what it has run on: 32-bit PIO through the TX and RX data FIFOs, no DMA.
//!
//! | offset | register | use here |
//! |---|---|---|
//! | 0x00 | RX_DATA_FIFO | read: the next word of the current received frame (0x04-0x1C alias it) |
//! | 0x20 | TX_DATA_FIFO | write: TX command A, TX command B, then the frame's words (0x24-0x3C alias it) |
//! | 0x40 | RX_STATUS_FIFO | read: pop a frame's status, length (frame + 4 CRC bytes) in 29:16 |
//! | 0x54 | IRQ_CFG | bit 8 IRQ_EN; bits 4 and 0: active-high, push-pull |
//! | 0x58 | INT_STS | write 1 to clear; bit 3 RSFL (a frame's status arrived) |
//! | 0x5C | INT_EN | the same bits, enabling the IRQ line |
//! | 0x64 | BYTE_TEST | reads 0x8765_4321 |
//! | 0x70 | TX_CFG | bit 1 TX_ON, bit 2 TXSAO (TX status FIFO may overrun: never read) |
//! | 0x74 | HW_CFG | bit 0 soft reset |
//! | 0x7C | RX_FIFO_INF | 23:16 frames waiting in the RX status FIFO |
//! | 0x80 | TX_FIFO_INF | 15:0 free bytes in the TX data FIFO |
//! | 0xA4, 0xA8 | MAC_CSR_CMD, MAC_CSR_DATA | MAC registers: 1 MAC_CR, 2 ADDRH, 3 ADDRL |
//!
//! Transmit: command A = first and last segment (bits 13, 12), the data start offset (20:16: bytes
//! of the first word to skip) and the byte count (10:0), command B = a tag (31:16) and the frame
//! length (10:0), then `ceil((offset + len) / 4)` little-endian words; the frame leaves when its
//! last word is written. Receive: the RSFL interrupt wakes the stack's
//! runner, which pops one status and reads `ceil(len / 4)` words (the last 4 bytes are the
//! frame's CRC, dropped).

use core::ptr::{read_volatile, write_volatile};
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState, RxToken, TxToken};
use embassy_sync::waitqueue::AtomicWaker;

/// Base address on mps2-an385/an386.
pub const BASE: usize = 0x4020_0000;
/// NVIC interrupt number on mps2-an385/an386.
pub const IRQ: u16 = 13;
/// Largest Ethernet frame handled, without its CRC (1500-byte MTU + 14-byte header).
pub const MAX_FRAME: usize = 1514;

const RX_DATA: usize = 0x00;
const TX_DATA: usize = 0x20;
const RX_STATUS: usize = 0x40;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;

const IRQ_EN: u32 = 1 << 8;
const IRQ_POL_HIGH: u32 = 1 << 4;
const IRQ_PUSH_PULL: u32 = 1 << 0;
const INT_RSFL: u32 = 1 << 3;
const TX_ON: u32 = 1 << 1;
const TXSAO: u32 = 1 << 2;
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const TX_FIRST: u32 = 1 << 13;
const TX_LAST: u32 = 1 << 12;

/// Where a frame starts in [`TxBuf`]: 2 bytes in, its IPv4 header and TCP payload (at frame
/// bytes 14 and 54) are word aligned in memory, as the socket's ring buffer is, so smoltcp's
/// payload copy into the frame takes memcpy's word path rather than its shift-and-merge path for
/// buffers of different alignment (about 4x the instructions per word).
const TX_OFFSET: usize = 2;

/// The transmit buffer, word aligned; the frame is at [`TX_OFFSET`].
#[repr(C, align(4))]
struct TxBuf([u8; TX_OFFSET + MAX_FRAME]);

/// The receive buffer, word aligned (filled with doubleword stores): a frame and its CRC, in
/// whole words (1518 bytes round up to 1520: the FIFO hands out a frame's last bytes as a
/// whole word).
#[repr(C, align(4))]
struct RxBuf([u8; RX_BUF]);
const RX_BUF: usize = (MAX_FRAME + 4).next_multiple_of(4);

/// Woken by the IRQ when a frame arrives.
static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// The controller's registers. Only one [`Lan9118`] exists (made by [`Lan9118::take`]); its
/// tokens use copies of this handle, one at a time, because the driver hands out at most one
/// RX and one TX token, each borrowing it.
#[derive(Clone, Copy)]
struct Regs;

impl Regs {
    fn write(self, offset: usize, value: u32) {
        // SAFETY: `BASE + offset` is an aligned LAN9118 register (module table; mps2.c maps the
        // controller at BASE); only the one `Lan9118` and its IRQ handler access them.
        unsafe { write_volatile((BASE + offset) as *mut u32, value) }
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { read_volatile((BASE + offset) as *const u32) }
    }

    fn mac_read(self, reg: u32) -> u32 {
        self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | reg);
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
        self.read(MAC_CSR_DATA)
    }

    fn mac_write(self, reg: u32, value: u32) {
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, CSR_BUSY | reg);
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
    }
}

/// Why the controller could not be brought up.
#[derive(Debug, defmt::Format)]
pub enum InitError {
    /// BYTE_TEST did not read 0x8765_4321: no LAN9118 at [`BASE`] (QEMU started without
    /// `-nic ...,model=lan9118`?).
    NoController(u32),
}

/// The LAN9118 as an `embassy-net` driver.
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: RxBuf,
    tx: TxBuf,
    /// Frames received and sent, and received frames dropped as too long.
    pub counters: Counters,
}

/// What the driver has moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames transmitted.
    pub tx_frames: u32,
    /// Received frames longer than [`MAX_FRAME`], dropped.
    pub rx_dropped: u32,
}

impl Lan9118 {
    /// Resets the controller, reads its MAC address and turns transmitter, receiver and the
    /// receive interrupt on. Call once, then unmask [`IRQ`].
    pub fn take() -> Result<Lan9118, InitError> {
        let regs = Regs;
        let test = regs.read(BYTE_TEST);
        if test != 0x8765_4321 {
            return Err(InitError::NoController(test));
        }
        regs.write(HW_CFG, 1);
        while regs.read(HW_CFG) & 1 != 0 {}
        let low = regs.mac_read(MAC_ADDRL).to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH).to_le_bytes();
        let mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
        regs.write(TX_CFG, TX_ON | TXSAO);
        regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
        regs.write(INT_STS, u32::MAX);
        regs.write(INT_EN, INT_RSFL);
        regs.write(IRQ_CFG, IRQ_EN | IRQ_POL_HIGH | IRQ_PUSH_PULL);
        Ok(Lan9118 {
            regs,
            mac,
            rx: RxBuf([0; RX_BUF]),
            tx: TxBuf([0; TX_OFFSET + MAX_FRAME]),
            counters: Counters::default(),
        })
    }

    /// The MAC address (QEMU's default 52:54:00:12:34:56 unless `-nic ...,mac=` says otherwise).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The receive interrupt: acknowledge it and wake the stack's runner.
    pub fn on_interrupt() {
        Regs.write(INT_STS, INT_RSFL);
        RX_WAKER.wake();
    }

    /// Pops the next received frame into `self.rx`; its length, or `None` if none is waiting.
    fn pop_frame(&mut self) -> Option<usize> {
        loop {
            if (self.regs.read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
                return None;
            }
            let status = self.regs.read(RX_STATUS);
            let len = ((status >> 16) & 0x3FFF) as usize;
            let words = len.div_ceil(4);
            if !(4..=MAX_FRAME + 4).contains(&len) {
                for _ in 0..words {
                    self.regs.read(RX_DATA);
                }
                self.counters.rx_dropped = self.counters.rx_dropped.wrapping_add(1);
                continue;
            }
            // Eight words per iteration as four doubleword loads from the FIFO port and its
            // aliases (the mirror of the TX path: one MMIO dispatch per 8 bytes under QEMU),
            // then word by word. `words * 4 <= RX_BUF`: all inside the buffer.
            let (blocks, tail) = self.rx.0[..words * 4].as_chunks_mut::<32>();
            for b in blocks {
                // SAFETY: `b` is 32 writable bytes of the word-aligned RX buffer; BASE + RX_DATA
                // .. BASE + 0x20 is the RX data FIFO port and its seven aliases (module table),
                // so the four doubleword loads pop the next eight words in order. d0-d3 are
                // declared clobbered.
                unsafe {
                    core::arch::asm!(
                        "vldmia {src}, {{d0-d3}}",
                        "vstmia {dst}, {{d0-d3}}",
                        src = in(reg) BASE + RX_DATA,
                        dst = in(reg) b.as_mut_ptr(),
                        out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                        out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                        options(nostack, preserves_flags),
                    );
                }
            }
            for chunk in tail.chunks_exact_mut(4) {
                chunk.copy_from_slice(&self.regs.read(RX_DATA).to_le_bytes());
            }
            self.counters.rx_frames = self.counters.rx_frames.wrapping_add(1);
            return Some(len - 4);
        }
    }
}

/// Reads BYTE_TEST `n` times: a register access costs what a TX or RX FIFO word costs, so
/// timing this gives the price of the PIO data path (`sink=null` logs it).
pub fn read_byte_test(n: u32) {
    for _ in 0..n {
        Regs.read(BYTE_TEST);
    }
}

/// A received frame, in the driver's RX buffer.
pub struct Rx<'a> {
    frame: &'a mut [u8],
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send, in the driver's TX buffer.
pub struct Tx<'a> {
    regs: Regs,
    buf: &'a mut TxBuf,
    sent: &'a mut u32,
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let result = f(&mut self.buf.0[TX_OFFSET..TX_OFFSET + len]);
        // Whole words from the buffer's (aligned) start: command A's data start offset tells
        // the controller to skip the first TX_OFFSET bytes, and it ignores the bytes of the last
        // word past the frame. TX_OFFSET + MAX_FRAME is a multiple of 4, so they are in `buf`.
        let words = &self.buf.0[..(TX_OFFSET + len).div_ceil(4) * 4];
        // The TX FIFO holds 4.5 KiB, more than a frame and its two command words: wait only if
        // a previous frame is still in it (never, on QEMU's model).
        while (self.regs.read(TX_FIFO_INF) & 0xFFFF) < (words.len() + 8) as u32 {}
        self.regs.write(
            TX_DATA,
            TX_FIRST | TX_LAST | ((TX_OFFSET as u32) << 16) | len as u32,
        );
        self.regs
            .write(TX_DATA, ((*self.sent & 0xFFFF) << 16) | len as u32);
        // Eight words per iteration, as four doubleword stores (VSTM of d0-d3) to the FIFO port
        // and its aliases: under QEMU each store is one trip through its MMIO dispatch (about
        // 100 ns, the big lock taken and released), so a 64-bit store halves the trips of a
        // word store; a word loop also added a compare, two branches and two increments per
        // word. On silicon the core splits each doubleword into two 32-bit bus writes, in order.
        let (blocks, tail) = words.as_chunks::<32>();
        for b in blocks {
            // SAFETY: `b` is 32 readable bytes in `buf` (word aligned); BASE + TX_DATA ..
            // BASE + 0x40 is the TX data FIFO port and its seven aliases (module table), so the
            // four doubleword stores push the eight words in order. d0-d3 are declared clobbered.
            unsafe {
                core::arch::asm!(
                    "vldmia {src}, {{d0-d3}}",
                    "vstmia {dst}, {{d0-d3}}",
                    src = in(reg) b.as_ptr(),
                    dst = in(reg) BASE + TX_DATA,
                    out("s0") _, out("s1") _, out("s2") _, out("s3") _,
                    out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                    options(nostack, preserves_flags),
                );
            }
        }
        for w in tail.chunks_exact(4) {
            self.regs
                .write(TX_DATA, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        *self.sent = self.sent.wrapping_add(1);
        result
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(Rx<'_>, Tx<'_>)> {
        RX_WAKER.register(cx.waker());
        let len = self.pop_frame()?;
        let Lan9118 {
            regs,
            rx,
            tx,
            counters,
            ..
        } = self;
        Some((
            Rx {
                frame: &mut rx.0[..len],
            },
            Tx {
                regs: *regs,
                buf: tx,
                sent: &mut counters.tx_frames,
            },
        ))
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Tx<'_>> {
        Some(Tx {
            regs: self.regs,
            buf: &mut self.tx,
            sent: &mut self.counters.tx_frames,
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        // QEMU's user network is always up (the PHY model reports link and autonegotiation
        // complete from reset).
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
