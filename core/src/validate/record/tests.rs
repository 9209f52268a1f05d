//! The flat-record prover against the machine: on every record the encoder can write (and
//! ones only the machine takes), on mutants of them, under tight limits and small workspaces,
//! whatever [`prove`] accepts the machine accepts with the same [`Validated`] and the same free
//! slots for a layout; and the records it is for are all proved here.
extern crate std;
use super::*;
use crate::ndarray::Order;
use crate::{Descriptor, Pickler};
use std::vec;
use std::vec::Vec;

/// xorshift64*: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// A message as the encoder writes it: the pickle, its buffer lengths, and whether it is a flat
/// record of what [`prove`] is for (so that it must prove it).
struct Case {
    pickle: Vec<u8>,
    lens: Vec<usize>,
    flat: bool,
}

fn key(rng: &mut Rng) -> std::string::String {
    let n = rng.below(12) as usize;
    (0..n)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz_0123456789"[rng.below(37) as usize]))
        .collect()
}

fn case(rng: &mut Rng) -> Case {
    let mut buf = vec![0u8; 4096];
    let mut p = Pickler::<'_, 16>::with_limits(&mut buf);
    let mut flat = true;
    let pairs = rng.below(10);
    let mut region = 0u16;
    p.dict(|p| {
        for _ in 0..pairs {
            match rng.below(40) {
                0 => {
                    flat = false;
                    p.int(rng.below(1000))?
                }
                1 => {
                    flat = false;
                    p.str("clé")?
                }
                _ => p.str(&key(rng))?,
            }
            match rng.below(32) {
                0 => p.none()?,
                1 => p.bool(rng.chance(2))?,
                2 => p.int(rng.below(300) as i64 - 10)?,
                3 => p.int(rng.next() as u32)?,
                4 => p.int(rng.next() as i64 >> rng.below(64))?,
                5 => {
                    // above i64::MAX: LONG1 of 9 bytes, a big int only the machine takes
                    let v = rng.next() | 1 << 63;
                    flat &= v <= i64::MAX as u64;
                    p.int(v)?
                }
                6 => p.f64(f64::from_bits(rng.next()))?,
                7 => p.f32(rng.below(1000) as f32 / 8.0)?,
                8 => p.str(&key(rng))?,
                9 => {
                    flat = false;
                    p.str("µs")?
                }
                10 => {
                    let len = rng.below(64) as u32;
                    let d = Descriptor::new(region, 0, len);
                    region += 1;
                    p.buffer(if rng.chance(2) { d.read_only() } else { d })?
                }
                11 => {
                    flat = false;
                    p.complex(1.0, -2.0)?
                }
                12 => {
                    flat = false;
                    p.list(|p| p.int(1u8))?
                }
                _ => {
                    let scalar = Scalar::ALL[rng.below(Scalar::ALL.len() as u64) as usize];
                    let order = if rng.chance(3) {
                        ByteOrder::Big
                    } else {
                        ByteOrder::Little
                    };
                    let dtype = DType::new(scalar, order);
                    let ndim = rng.below(6) as usize;
                    let shape: Vec<usize> = (0..ndim)
                        .map(|_| match rng.below(8) {
                            0 => 0,
                            1 => 300 + rng.below(70_000) as usize,
                            _ => 1 + rng.below(5) as usize,
                        })
                        .collect();
                    let elements: usize = shape.iter().product();
                    let len = elements.saturating_mul(dtype.itemsize());
                    // (within the default 1 GiB an array may have)
                    let Some(len) = u32::try_from(len).ok().filter(|n| *n <= 1 << 30) else {
                        p.none()?;
                        continue;
                    };
                    let d = Descriptor::new(region, 0, len);
                    region += 1;
                    let d = if rng.chance(3) { d.read_only() } else { d };
                    let order = if rng.chance(4) {
                        Order::Fortran
                    } else {
                        Order::C
                    };
                    p.ndarray(d, dtype, &shape, order)?
                }
            }
        }
        Ok::<(), crate::EncodeError>(())
    })
    .expect("the record fits");
    let encoded = p.finish().expect("finished");
    Case {
        pickle: encoded.pickle.to_vec(),
        lens: encoded.descriptors.iter().map(|d| d.len as usize).collect(),
        flat,
    }
}

/// Opcodes a mutation writes: the grammar's own and their neighbours.
const OPCODES: &[u8] = b"\x80}(u.sKMJ\x8aG\x8cNhX\x88\x89\x97\x98\x93\x94)\x85\x86\x87t\x81RbqrB]a\x00\x01\x05\x07\xff";

/// A random int literal in any of the spellings the strict profile reads.
fn int_literal(rng: &mut Rng) -> Vec<u8> {
    let v = match rng.below(4) {
        0 => rng.below(3) as i64 - 1,
        1 => -(rng.below(300) as i64),
        2 => rng.below(70_000) as i64,
        _ => rng.next() as i64 >> rng.below(64),
    };
    match rng.below(4) {
        0 => vec![b'K', v as u8],
        1 => {
            let b = (v as u16).to_le_bytes();
            vec![b'M', b[0], b[1]]
        }
        2 => {
            let b = (v as i32).to_le_bytes();
            vec![b'J', b[0], b[1], b[2], b[3]]
        }
        _ => {
            let n = rng.below(10) as usize;
            let mut out = vec![0x8a, n as u8];
            out.extend((0..n).map(|i| if i < 8 { (v >> (8 * i)) as u8 } else { 0xff }));
            out
        }
    }
}

fn mutate(rng: &mut Rng, pickle: &mut Vec<u8>, lens: &mut Vec<usize>) {
    let len = pickle.len() as u64;
    let i = rng.below(len) as usize;
    // Respell one int literal (a shape's dimension, an offset, a dict value) as another.
    if rng.chance(4) {
        let ints: Vec<(usize, usize)> = crate::reader::Reader::new(pickle)
            .map_while(|op| op.ok())
            .filter(|op| matches!(op.arg, Argument::Int(_) | Argument::Long(_)))
            .filter(|op| op.opcode != Opcode::Proto && op.opcode != Opcode::Binget)
            .map(|op| (op.offset, op.end))
            .collect();
        if let Some(&(at, end)) = ints.get(rng.below(ints.len() as u64) as usize) {
            let literal = int_literal(rng);
            pickle.splice(at..end, literal);
            return;
        }
    }
    match rng.below(9) {
        0 => pickle[i] = rng.next() as u8,
        1 => pickle[i] = OPCODES[rng.below(OPCODES.len() as u64) as usize],
        2 => {
            pickle.remove(i);
        }
        3 => pickle.insert(i, OPCODES[rng.below(OPCODES.len() as u64) as usize]),
        4 => pickle.truncate(i),
        5 => pickle[i] = pickle[i].wrapping_add(if rng.chance(2) { 1 } else { 255 }),
        6 => {
            let j = rng.below(len) as usize;
            pickle.swap(i, j);
        }
        7 => {
            let j = (i + 1 + rng.below(12) as usize).min(pickle.len());
            let piece = pickle[i..j].to_vec();
            let at = rng.below(len) as usize;
            pickle.splice(at..at, piece);
        }
        _ => match (rng.below(3), lens.len()) {
            (0, n) if n > 0 => {
                let k = rng.below(n as u64) as usize;
                lens[k] = if rng.chance(2) {
                    lens[k] + 1
                } else {
                    lens[k].saturating_sub(1)
                };
            }
            (1, n) if n > 0 => {
                lens.pop();
            }
            _ => lens.push(rng.below(16) as usize),
        },
    }
}

/// Both provers on one pickle with one validator and workspace size: panics if [`prove`]
/// accepts what the machine does not, or returns anything but what the machine returns. Returns
/// (proved here, accepted by the machine).
fn compare(
    v: &Validator<'_>,
    pickle: &[u8],
    lens: &[usize],
    stack: usize,
    memo: usize,
) -> (bool, bool) {
    let mut stack = vec![Slot::EMPTY; stack];
    let mut memo = vec![Slot::EMPTY; memo];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    let capacities = ws.capacities();
    let mut fast_notes = Recorder::new();
    let fast = prove(v, pickle, lens, capacities, Some(&mut fast_notes));
    let mut notes = Recorder::new();
    let machine = v.run(pickle, lens, &mut ws, Some(&mut notes));
    if let Some(proved) = fast {
        assert_eq!(
            machine.as_ref().ok(),
            Some(&proved),
            "proved here, machine: {machine:?}\n{pickle:02x?} {lens:?} {:?} stack {} memo {}",
            v.limits,
            capacities[0],
            capacities[1]
        );
        assert!(
            fast_notes.free().eq(notes.free()),
            "other free slots\n{pickle:02x?}"
        );
    }
    (fast.is_some(), machine.is_ok())
}

/// Limits at and around what `validated` needs, or the defaults.
fn limits(rng: &mut Rng, validated: Option<Validated>, len: usize) -> Limits {
    let mut l = Limits::DEFAULT;
    let Some(ok) = validated else {
        return l;
    };
    let near = |rng: &mut Rng, x: u64| x.saturating_add(rng.below(3)).saturating_sub(1);
    match rng.below(6) {
        0 => l.max_alloc = near(rng, ok.alloc),
        1 => l.max_depth = near(rng, u64::from(ok.depth)) as u32,
        2 => l.max_len = near(rng, len as u64) as usize,
        3 => l.max_array_bytes = rng.below(80_000),
        4 => l.max_expansion = 0,
        _ => {}
    }
    l
}

#[test]
fn proves_exactly_what_the_machine_proves() {
    let mut rng = Rng(0x5eed_f00d_d0a5);
    let (mut cases, mut proved, mut mutants, mut mutants_proved, mut machine_only) =
        (0, 0, 0, 0, 0);
    for _ in 0..2_500 {
        let c = case(&mut rng);
        cases += 1;
        let strict = Validator::new(Profile::Strict);
        let (fast, ok) = compare(&strict, &c.pickle, &c.lens, 64, 16);
        // Every flat record the machine accepts is proved here, on the default settings.
        assert!(ok, "the encoder's own record refused: {:02x?}", c.pickle);
        assert_eq!(fast, c.flat, "{:02x?}", c.pickle);
        proved += usize::from(fast);
        // The same record under limits at its needs, and in small workspaces.
        let validated = run(&strict, &c.pickle, &c.lens);
        for _ in 0..4 {
            let v = strict.with_limits(limits(&mut rng, validated, c.pickle.len()));
            let (stack, memo) = (rng.below(24) as usize, rng.below(3) as usize);
            let (fast, ok) = compare(&v, &c.pickle, &c.lens, stack, memo);
            machine_only += usize::from(ok && !fast);
        }
        // The general profile proves the same records (against its own machine); a validator
        // with extra globals leaves them to the machine.
        let general = Validator::new(Profile::General);
        assert_eq!(
            compare(&general, &c.pickle, &c.lens, 64, 16),
            (c.flat, true)
        );
        let extra = strict.with_allowed(&[("m", "f")]);
        assert!(!compare(&extra, &c.pickle, &c.lens, 64, 16).0);
        // Mutants, one to three changes each (mostly of records proved here).
        for _ in 0..if c.flat { 60 } else { 10 } {
            let (mut pickle, mut lens) = (c.pickle.clone(), c.lens.clone());
            for _ in 0..1 + rng.below(3) {
                if pickle.is_empty() {
                    break;
                }
                mutate(&mut rng, &mut pickle, &mut lens);
            }
            let profile = if rng.chance(3) { general } else { strict };
            let v = if rng.chance(4) {
                profile.with_limits(limits(&mut rng, validated, pickle.len()))
            } else {
                profile
            };
            let (fast, _) = compare(&v, &pickle, &lens, 64, 16);
            mutants += 1;
            mutants_proved += usize::from(fast);
        }
    }
    std::println!(
        "{cases} records, {proved} proved here; {mutants} mutants, {mutants_proved} proved \
         here; {machine_only} machine-only under tight settings"
    );
    // The comparisons meant something: both sides of the line were reached.
    assert!(proved > cases / 3, "{proved} of {cases}");
    assert!(
        mutants_proved > mutants / 100,
        "{mutants_proved} of {mutants}"
    );
    assert!(machine_only > 100);
}

fn run(v: &Validator<'_>, pickle: &[u8], lens: &[usize]) -> Option<Validated> {
    let mut stack = vec![Slot::EMPTY; 64];
    let mut memo = vec![Slot::EMPTY; 16];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    v.run(pickle, lens, &mut ws, None).ok()
}

#[test]
fn the_sensor_message_is_proved_here_and_remembered_as_its_layout() {
    let mut buf = [0u8; 256];
    let mut p = Pickler::new(&mut buf);
    p.dict(|p| {
        p.str("seq")?;
        p.int(41u32)?;
        p.str("t_ns")?;
        p.int(1_700_000_000_123_456_789u64)?;
        p.str("adc")?;
        p.array::<i16>(Descriptor::new(1, 0, 8192), &[1024, 4])?;
        p.str("gain")?;
        p.f32(0.5)
    })
    .unwrap();
    let encoded = p.finish().unwrap();
    let pickle = encoded.pickle.to_vec();
    let v = Validator::new(Profile::Strict);
    let (fast, ok) = compare(&v, &pickle, &[8192], 64, 16);
    assert!(fast && ok);
    // Through `validate` with a layout: the next message, new numbers in the free slots, is
    // matched and gives what the machine gives for it.
    let (mut stack, mut memo) = ([Slot::EMPTY; 64], [Slot::EMPTY; 16]);
    let mut layout = Layout::new();
    let mut ws = Workspace::new(&mut stack, &mut memo).with_layout(&mut layout);
    let first = v.validate(&pickle, &[8192], &mut ws).unwrap();
    assert_eq!(Some(first), run(&v, &pickle, &[8192]));
    let mut next = pickle.clone();
    let seq = next.windows(3).position(|w| w == b"seq").unwrap() + 4;
    next[seq] = 200;
    let second = v.validate(&next, &[8192], &mut ws).unwrap();
    assert_eq!(Some(second), run(&v, &next, &[8192]));
    assert_eq!(layout.free_slots(), 3, "seq, t_ns and gain");
}
