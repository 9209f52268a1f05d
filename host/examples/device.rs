//! A simulated instrument running the real device code on the host (core `Pickler` + hal
//! `Publisher` over an `IoLink`): the stream source for the Python tests, the CLI tests and the
//! Python delivery benchmark. `--help` prints the usage below.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use dmapickle_core::{Descriptor, Pickler};
use dmapickle_hal::file_region::FileRegion;
use dmapickle_hal::io::IoLink;
use dmapickle_hal::{DmaBuf, Outgoing, Publisher};

const OS_SYSTEM: &[u8] = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";

const USAGE: &str = "\
device: a simulated instrument (the real core Pickler and hal Publisher) sending dmapickle frames

usage: device [--to SINK] [--count N] [--rows R] [--buffers B] [--interval-ms MS]
              [--region ID=PATH] [--per-connection M] [--hostile-every K] [--readonly]
              [--no-data-crc]

Message i is {'seq': i, 't': i / 1000, 'adc': ndarray<i2>(R, 4)} (and 'adc1' .. 'adc{B-1}' with
--buffers B); sample k of array j is (31 * i + 7 * j + k) mod 65536 as an int16, so a consumer
can check every byte.

  --to SINK           - (stdout, default), file://PATH (a file, FIFO or pty),
                      tcp-listen://HOST:PORT or unix-listen:///PATH: serve one connection at a
                      time; port 0 prints the chosen port on stderr as `listening HOST:PORT`.
                      (The older spellings file:PATH, tcp-listen:H:P, unix-listen:PATH work too.)
  --count N           messages to send (default 10)
  --rows R            rows of each array (default 256)
  --buffers B         arrays (out-of-band buffers) per message, 1 to 8 (default 1)
  --interval-ms MS    pause after each message (default 0)
  --region ID=PATH    keep the arrays in a shared region file instead of sending them inline,
                      waiting for the host's releases when every slot is lent
  --per-connection M  drop the connection after M messages, serve the rest on the next one
  --hostile-every K   after every K-th message, a frame whose pickle calls os.system or builds
                      an object array (a correct host refuses them)
  --readonly          mark the buffers read-only
  --no-data-crc       frames without a data CRC (NO_DATA_CRC: the host needs --trust-link)
  --help              this text
";

/// Most arrays per message.
const MAX_BUFFERS: usize = 8;

struct Opts {
    to: String,
    count: u64,
    rows: usize,
    interval: Duration,
    region: Option<(u16, PathBuf)>,
    per_connection: u64,
    hostile_every: u64,
    readonly: bool,
    buffers: usize,
    no_data_crc: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        to: "-".into(),
        count: 10,
        rows: 256,
        interval: Duration::ZERO,
        region: None,
        per_connection: 0,
        hostile_every: 0,
        readonly: false,
        buffers: 1,
        no_data_crc: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "--to" => o.to = val("--to")?,
            "--count" => o.count = num(val("--count")?)?,
            "--rows" => o.rows = num(val("--rows")?)? as usize,
            "--interval-ms" => o.interval = Duration::from_millis(num(val("--interval-ms")?)?),
            "--per-connection" => o.per_connection = num(val("--per-connection")?)?,
            "--hostile-every" => o.hostile_every = num(val("--hostile-every")?)?,
            "--readonly" => o.readonly = true,
            "--no-data-crc" => o.no_data_crc = true,
            "--buffers" => {
                o.buffers = num(val("--buffers")?)? as usize;
                if !(1..=MAX_BUFFERS).contains(&o.buffers) {
                    return Err(format!("--buffers must be 1 to {MAX_BUFFERS}"));
                }
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--region" => {
                let v = val("--region")?;
                let (id, path) = v.split_once('=').ok_or("--region ID=PATH")?;
                o.region = Some((id.parse().map_err(|_| "region id")?, path.into()));
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    Ok(o)
}

fn fill(seq: u64, array: usize, out: &mut [u8]) {
    let base = 31u64.wrapping_mul(seq).wrapping_add(7 * array as u64);
    for (k, s) in out.chunks_exact_mut(2).enumerate() {
        let v = (base.wrapping_add(k as u64) & 0xffff) as u16;
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Encode message `seq` whose arrays are described by `descs`; the descriptors the encoder
/// emitted, in buffer order.
fn encode<'b>(
    buf: &'b mut [u8],
    seq: u64,
    rows: usize,
    descs: &[Descriptor],
) -> (&'b [u8], heapless::Vec<Descriptor, MAX_BUFFERS>) {
    let mut p: Pickler<'_, MAX_BUFFERS> = Pickler::with_limits(buf);
    p.dict(|p| {
        p.str("seq")?;
        p.int(seq)?;
        p.str("t")?;
        p.f64(seq as f64 / 1000.0)?;
        for (j, d) in descs.iter().enumerate() {
            match j {
                0 => p.str("adc")?,
                _ => p.str(&format!("adc{j}"))?,
            }
            p.array::<i16>(*d, &[rows, 4])?;
        }
        Ok::<(), dmapickle_core::Error>(())
    })
    .expect("message fits");
    let enc = p.finish().expect("one value");
    (enc.pickle, enc.descriptors.iter().copied().collect())
}

/// The hostile frame sent after message `seq`: `os.system('id')`, or an object array over raw
/// bytes (which numpy would turn into pointers).
fn hostile<W: Write>(link: &mut IoLink<W>, publisher: &Publisher, seq: u64) -> io::Result<()> {
    if seq.is_multiple_of(2) {
        publisher
            .publish_pickle(link, OS_SYSTEM)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    } else {
        let mut pbuf = [0u8; 256];
        let mut p = Pickler::new(&mut pbuf);
        let desc = Descriptor::new(1, 0, 16);
        p.ndarray(
            desc,
            dmapickle_core::DType::native(dmapickle_core::ndarray::Scalar::I8),
            &[16],
            dmapickle_core::Order::C,
        )
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let enc = p.finish().map_err(|e| io::Error::other(format!("{e:?}")))?;
        // Rewrite the dtype string '|i1' into '|O8'-like object dtype '|O' + pad: same length.
        let mut pickle = enc.pickle.to_vec();
        if let Some(i) = pickle.windows(3).position(|w| w == b"|i1") {
            pickle[i + 1] = b'O';
            pickle[i + 2] = b'8';
        }
        let mut b = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 16])));
        b.fill_from(&[0xAA; 16])
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        publisher
            .publish(link, &pickle, &[desc], [Outgoing::Inline(b)])
            .map_err(|e| io::Error::other(format!("{:?}", e.error)))?;
    }
    Ok(())
}

enum Target {
    Once(Box<dyn Write>),
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Target {
    fn open(to: &str) -> io::Result<Target> {
        if to == "-" {
            return Ok(Target::Once(Box::new(io::stdout().lock())));
        }
        // `SCHEME://REST` like `dmapickle replay --to`; the older `SCHEME:REST` still works.
        let to = match to.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}:{rest}"),
            None => to.to_string(),
        };
        let to = to.as_str();
        if let Some(p) = to.strip_prefix("file:") {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(!p.starts_with("/dev/"))
                .open(p)?;
            return Ok(Target::Once(Box::new(f)));
        }
        if let Some(a) = to.strip_prefix("tcp-listen:") {
            let l = TcpListener::bind(a)?;
            eprintln!("listening {}", l.local_addr()?);
            return Ok(Target::Tcp(l));
        }
        if let Some(p) = to.strip_prefix("unix-listen:") {
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p)?;
            eprintln!("listening {p}");
            return Ok(Target::Unix(l));
        }
        Err(io::Error::other(format!(
            "unknown sink {to}; use -, file://PATH, tcp-listen://HOST:PORT or unix-listen:///PATH"
        )))
    }

    fn next(&mut self) -> io::Result<Box<dyn Write>> {
        match self {
            Target::Once(w) => Ok(std::mem::replace(w, Box::new(io::sink()))),
            Target::Tcp(l) => Ok(Box::new(l.accept()?.0)),
            Target::Unix(l) => Ok(Box::new(l.accept()?.0)),
        }
    }
}

fn run(o: Opts) -> io::Result<()> {
    let publisher = if o.no_data_crc {
        Publisher::new().without_data_crc()
    } else {
        Publisher::new()
    };
    let bytes = o.rows * 4 * 2;
    let region = match &o.region {
        Some((id, path)) => {
            // Eight messages' worth of slots, and a ring with room for all of their releases.
            let slots = 8 * o.buffers;
            let ring = slots.next_power_of_two() as u16;
            let len = dmapickle_core::release::control_len(ring) + slots * bytes.div_ceil(64) * 64;
            Some(FileRegion::create(path, *id, len, bytes, ring)?)
        }
        None => None,
    };
    let mut target = Target::open(&o.to)?;
    let mut link = IoLink::new(io::BufWriter::with_capacity(1 << 16, target.next()?));
    let mut pbuf = vec![0u8; 512 + 128 * o.buffers];
    let mut dma: Vec<DmaBuf> = (0..o.buffers)
        .map(|j| {
            let mem: &'static mut [u8] = Box::leak(vec![0u8; bytes].into_boxed_slice());
            DmaBuf::new(0, (j * bytes) as u32, mem)
        })
        .collect();
    let mut on_conn = 0;
    let full = || io::Error::other("more buffers than MAX_BUFFERS");
    // Fill buffer `j` (DmaBuf or SharedBuf) with message `seq`'s samples; its descriptor.
    macro_rules! prepare {
        ($b:expr, $seq:expr, $j:expr) => {{
            $b.set_len(bytes)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            fill($seq, $j, $b.as_mut_slice());
            let d = $b.descriptor();
            if o.readonly {
                d.read_only()
            } else {
                d
            }
        }};
    }
    for seq in 0..o.count {
        if o.per_connection > 0 && on_conn == o.per_connection {
            // Close this connection before waiting for the next one: the host only reconnects
            // after it saw this one end.
            link.get_mut().flush()?;
            let idle: Box<dyn Write> = Box::new(io::sink());
            drop(std::mem::replace(
                &mut link,
                IoLink::new(io::BufWriter::new(idle)),
            ));
            link = IoLink::new(io::BufWriter::with_capacity(1 << 16, target.next()?));
            on_conn = 0;
        }
        let mut descs: heapless::Vec<Descriptor, MAX_BUFFERS> = heapless::Vec::new();
        let result = match &region {
            Some(r) => {
                let region = r.region();
                let mut out: heapless::Vec<Outgoing<'_, DmaBuf>, MAX_BUFFERS> =
                    heapless::Vec::new();
                for j in 0..o.buffers {
                    let mut sbuf = loop {
                        region.poll_releases();
                        if let Some(b) = region.acquire() {
                            break b;
                        }
                        link.get_mut().flush()?;
                        std::thread::sleep(Duration::from_millis(1));
                    };
                    descs.push(prepare!(sbuf, seq, j)).map_err(|_| full())?;
                    out.push(Outgoing::Shared(sbuf)).map_err(|_| full())?;
                }
                let (pickle, descs) = encode(&mut pbuf, seq, o.rows, &descs);
                publisher
                    .publish_vec(&mut link, pickle, &descs, out)
                    .map(|_| ())
                    .map_err(|e| e.error)
            }
            None => {
                let mut out: heapless::Vec<Outgoing<'_, DmaBuf>, MAX_BUFFERS> =
                    heapless::Vec::new();
                for (j, mut b) in dma.drain(..).enumerate() {
                    descs.push(prepare!(b, seq, j)).map_err(|_| full())?;
                    out.push(Outgoing::Inline(b)).map_err(|_| full())?;
                }
                let (pickle, descs) = encode(&mut pbuf, seq, o.rows, &descs);
                match publisher.publish_vec(&mut link, pickle, &descs, out) {
                    Ok(sent) => {
                        dma.extend(sent.inline);
                        Ok(())
                    }
                    Err(e) => {
                        dma.extend(e.inline);
                        Err(e.error)
                    }
                }
            }
        };
        if let Err(e) = result {
            // A reader that went away ends the device (like a UART nobody listens to).
            return Err(io::Error::other(format!(
                "publish failed at message {seq}: {e:?}"
            )));
        }
        on_conn += 1;
        if o.hostile_every > 0 && (seq + 1) % o.hostile_every == 0 {
            hostile(&mut link, &publisher, seq)?;
        }
        if !o.interval.is_zero() {
            link.get_mut().flush()?;
            std::thread::sleep(o.interval);
        }
    }
    link.get_mut().flush()?;
    if region.is_some() {
        // Keep the region mapped until the host released every buffer (or 10 s pass), so a
        // reader that is still loading never sees the file change under it.
        let r = region.as_ref().map(|r| r.region());
        for _ in 0..10_000 {
            if let Some(r) = r {
                r.poll_releases();
                if r.lent() == 0 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match parse().map_err(io::Error::other).and_then(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
