//! Shared by the link's integration tests: seeded random messages (numpy arrays of random
//! dtypes and shapes), the device code that publishes them, and CPython.
#![allow(dead_code)]

pub mod faults;
pub mod streams;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dmapickle_core::ndarray::{ByteOrder, Scalar};
use dmapickle_core::{DType, Descriptor, Order, Pickler};
use dmapickle_hal::{DmaBuf, Link, Outgoing, Publisher};
use dmapickle_host::Message;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// Most arrays in one message.
pub const MAX_ARRAYS: usize = 4;
/// Capacity of each device DMA buffer.
pub const DMA_CAP: usize = 256 << 10;

/// One array of a message.
#[derive(Debug, Clone)]
pub struct ArraySpec {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub order: Order,
    pub readonly: bool,
    pub bytes: Vec<u8>,
}

/// Message `i` of the stream seeded with `seed`: the same on the device and the host side.
/// About one message in `big_every` carries an array of 64 KiB to 256 KiB.
pub fn spec(seed: u64, i: u32, big_every: u32) -> Vec<ArraySpec> {
    let mut rng = SmallRng::seed_from_u64(seed ^ (u64::from(i) << 20) ^ 0x9E37_79B9);
    let n = rng.random_range(0..=3usize);
    let mut out = Vec::with_capacity(n + 1);
    let big = big_every > 0 && rng.random_ratio(1, big_every);
    for j in 0..n + usize::from(big) {
        let scalar = Scalar::ALL[rng.random_range(0..Scalar::ALL.len())];
        let order = if rng.random_bool(0.5) {
            ByteOrder::Little
        } else {
            ByteOrder::Big
        };
        let dtype = DType::new(scalar, order);
        let item = dtype.itemsize();
        let shape: Vec<usize> = if big && j == n {
            let elems = rng.random_range((64 << 10)..=(256 << 10)) / item;
            vec![elems]
        } else {
            let ndim = rng.random_range(0..=3);
            (0..ndim).map(|_| rng.random_range(0..=12)).collect()
        };
        let len = shape.iter().product::<usize>() * item;
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        out.push(ArraySpec {
            dtype,
            shape,
            order: if rng.random_bool(0.3) {
                Order::Fortran
            } else {
                Order::C
            },
            readonly: rng.random_bool(0.5),
            bytes,
        });
    }
    out
}

/// The pickle the device writes for message `i` with arrays `arrays`, whose buffers have the
/// descriptors `descs`: `{"seq": i, "a0": ndarray, ...}`.
pub fn encode(i: u32, arrays: &[ArraySpec], descs: &[Descriptor]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let mut p: Pickler<'_, MAX_ARRAYS> = Pickler::with_limits(&mut out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(i)?;
        for (j, (a, d)) in arrays.iter().zip(descs).enumerate() {
            p.str(&format!("a{j}"))?;
            p.ndarray(*d, a.dtype, &a.shape, a.order)?;
        }
        Ok::<(), dmapickle_core::Error>(())
    })
    .unwrap();
    p.finish().unwrap().pickle.to_vec()
}

/// Descriptors of inline buffers for `arrays` (region 1, offsets as the device's DMA buffers).
pub fn inline_descriptors(arrays: &[ArraySpec]) -> Vec<Descriptor> {
    arrays
        .iter()
        .enumerate()
        .map(|(j, a)| {
            let d = Descriptor::new(1, (j * DMA_CAP) as u32, a.bytes.len() as u32);
            if a.readonly {
                d.read_only()
            } else {
                d
            }
        })
        .collect()
}

/// The device: owns `MAX_ARRAYS` `'static` DMA buffers and publishes messages through the hal.
pub struct Device {
    pub publisher: Publisher,
    bufs: Vec<DmaBuf>,
}

impl Device {
    pub fn new() -> Self {
        let bufs = (0..MAX_ARRAYS)
            .map(|j| {
                let mem: &'static mut [u8] = Box::leak(vec![0u8; DMA_CAP].into_boxed_slice());
                DmaBuf::new(1, (j * DMA_CAP) as u32, mem)
            })
            .collect();
        Device {
            publisher: Publisher::new(),
            bufs,
        }
    }

    /// Fill the DMA buffers with `arrays`, encode, publish; returns the frame's sequence number.
    pub fn publish<L: Link>(&mut self, link: &mut L, i: u32, arrays: &[ArraySpec]) -> u32 {
        let descs = inline_descriptors(arrays);
        let pickle = encode(i, arrays, &descs);
        let mut out: heapless::Vec<Outgoing<'static, DmaBuf>, MAX_ARRAYS> = heapless::Vec::new();
        let mut spare = Vec::new();
        for (j, mut b) in self.bufs.drain(..).enumerate() {
            match arrays.get(j) {
                Some(a) => {
                    b.fill_from(&a.bytes).unwrap();
                    let _ = out.push(Outgoing::Inline(b));
                }
                None => spare.push(b),
            }
        }
        let sent = self
            .publisher
            .publish_vec(link, &pickle, &descs, out)
            .unwrap_or_else(|e| panic!("publish {i}: {:?} {:?}", e.error, e.link));
        self.bufs = sent.inline.into_iter().chain(spare).collect();
        sent.seq
    }
}

/// Check a delivered message against what message `i` must be, byte for byte.
pub fn check_message(m: &Message, i: u32, arrays: &[ArraySpec]) {
    let descs = inline_descriptors(arrays);
    assert_eq!(
        &m.pickle[..],
        &encode(i, arrays, &descs)[..],
        "message {i}: pickle"
    );
    assert_eq!(m.buffers.len(), arrays.len(), "message {i}: buffer count");
    for (j, (b, a)) in m.buffers.iter().zip(arrays).enumerate() {
        assert_eq!(b.descriptor, descs[j], "message {i} buffer {j}: descriptor");
        assert!(
            b.data[..] == a.bytes[..],
            "message {i} buffer {j}: bytes differ"
        );
        assert_eq!(
            b.data.as_ptr() as usize % 64,
            0,
            "message {i} buffer {j}: alignment"
        );
    }
}

/// The Python interpreter with numpy 2 (DMAPICKLE_PYTHON, else the repo's `.venv/np2`), or with
/// numpy 1.26 (DMAPICKLE_PYTHON_NP1, else `.venv/np1`).
pub fn python(numpy1: bool) -> PathBuf {
    let (var, venv) = if numpy1 {
        ("DMAPICKLE_PYTHON_NP1", "np1")
    } else {
        ("DMAPICKLE_PYTHON", "np2")
    };
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/"))
        .join(venv)
        .join("bin/python");
    assert!(
        p.exists(),
        "no Python with numpy: set {var} or run scripts/setup.sh"
    );
    p
}

const LOADER: &str = r#"
import pickle, struct, sys, zlib
import numpy as np
inp = sys.stdin.buffer
out = sys.stdout
def take(n):
    b = inp.read(n)
    if len(b) != n:
        raise SystemExit("short input")
    return b
while True:
    (nbuf,) = struct.unpack("<I", take(4))
    if nbuf == 0xFFFFFFFF:
        break
    (plen,) = struct.unpack("<I", take(4))
    data = take(plen)
    bufs = []
    for _ in range(nbuf):
        (blen,) = struct.unpack("<I", take(4))
        bufs.append(bytearray(take(blen)))
    obj = pickle.loads(data, buffers=bufs)
    fields = [str(obj["seq"])]
    for j in range(nbuf):
        a = obj["a%d" % j]
        raw = bufs[j]
        zero_copy = a.size == 0 or a.ctypes.data == np.frombuffer(raw, np.uint8).ctypes.data
        fields.append("%s|%s|%s|%d|%d" % (a.dtype.str, "x".join(map(str, a.shape)),
                      "F" if (a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous) else "C",
                      zlib.crc32(a.tobytes(order="A")), zero_copy))
    out.write(" ".join(fields) + "\n")
out.write("numpy %s done\n" % np.__version__)
out.flush()
"#;

/// CPython with numpy, fed messages one after another, answering one line per message.
pub struct PythonLoader {
    child: std::process::Child,
    stdin: std::io::BufWriter<std::process::ChildStdin>,
    lines: std::thread::JoinHandle<Vec<String>>,
}

impl PythonLoader {
    pub fn spawn(numpy1: bool) -> Self {
        let mut child = Command::new(python(numpy1))
            .arg("-c")
            .arg(LOADER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start Python (run scripts/setup.sh)");
        let stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map(|l| l.unwrap()).collect()
        });
        PythonLoader {
            child,
            stdin,
            lines,
        }
    }

    /// Queue one delivered message for `pickle.loads(pickle, buffers=...)`.
    pub fn send(&mut self, m: &Message) {
        let w = &mut self.stdin;
        w.write_all(&(m.buffers.len() as u32).to_le_bytes())
            .unwrap();
        w.write_all(&(m.pickle.len() as u32).to_le_bytes()).unwrap();
        w.write_all(&m.pickle).unwrap();
        for b in &m.buffers {
            w.write_all(&(b.data.len() as u32).to_le_bytes()).unwrap();
            w.write_all(&b.data).unwrap();
        }
    }

    /// Close the input; Python's answer lines.
    pub fn finish(mut self) -> Vec<String> {
        self.stdin.write_all(&u32::MAX.to_le_bytes()).unwrap();
        self.stdin.flush().unwrap();
        drop(self.stdin);
        let lines = self.lines.join().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "Python failed: {status}");
        lines
    }
}

/// The line Python must print for message `i`.
pub fn expected_line(i: u32, arrays: &[ArraySpec]) -> String {
    let mut fields = vec![i.to_string()];
    for a in arrays {
        let f_order = a.order == Order::Fortran
            && a.shape.len() > 1
            && a.shape.iter().filter(|&&d| d != 1).count() > 1
            && a.shape.iter().all(|&d| d != 0);
        fields.push(format!(
            "{}|{}|{}|{}|1",
            a.dtype.str(),
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            if f_order { "F" } else { "C" },
            crc32_ieee(&a.bytes)
        ));
    }
    fields.join(" ")
}

/// zlib's CRC-32 (IEEE), to compare with Python's `zlib.crc32`.
pub fn crc32_ieee(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
