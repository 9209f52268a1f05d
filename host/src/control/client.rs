//! Sending commands: request ids, timeouts and retries.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmapickle_core::control::{
    encode_request, CommandError, LinkKind, Refusal, Reply, Request, MAX_FRAME,
};

use super::Replies;

/// How long one attempt waits for its reply by default.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts after the first by default.
pub const RETRIES: u32 = 4;

/// Why a command got no usable answer.
#[derive(Debug)]
pub enum ControlError {
    /// No reply to any of `attempts` sends of request `id`.
    Timeout {
        /// The request id used for every attempt.
        id: u32,
        /// Sends made.
        attempts: u32,
    },
    /// The down link failed.
    Io(io::Error),
    /// The device answered with an error: nothing was applied.
    Device(CommandError),
    /// The device answered with a reply of another kind than the command asks for.
    Unexpected(Reply),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Timeout { id, attempts } => write!(
                f,
                "no reply from the device to request {id} after {attempts} attempts \
                 (is the firmware reading commands on this link?)"
            ),
            ControlError::Io(e) => write!(f, "cannot send the command: {e}"),
            ControlError::Device(e) => write!(f, "the device refused: {}", describe_error(e)),
            ControlError::Unexpected(r) => write!(f, "unexpected reply {r:?}"),
        }
    }
}

impl std::error::Error for ControlError {}

fn describe_error(e: &CommandError) -> String {
    match e {
        CommandError::Unknown => "unknown command (older firmware?)".into(),
        CommandError::UnsupportedVersion { supported } => {
            format!("control version not supported (device reads version {supported})")
        }
        CommandError::Refused { reason } => match reason {
            Refusal::AlreadyRunning => "acquisition is already running".into(),
            Refusal::AlreadyStopped => "acquisition is already stopped".into(),
            Refusal::BuffersLent { lent } => {
                format!("{lent} shared buffers of the old layout are still lent to the host")
            }
            other => format!("{other:?}"),
        },
        CommandError::Invalid { min, max } => format!("value out of range {min}..={max}"),
        other => format!("{other:?}"),
    }
}

/// One reply as `key=value` words, the form `dmapickle ctl` prints.
pub fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Info(i) => format!(
            "firmware={}.{}.{} wire_version={} control_version={} link={} region={} \
             region_len={} slots={} block_rows={} max_block_rows={} channels={} rate_hz={} \
             max_rate_hz={} running={} next_seq={}",
            i.firmware[0],
            i.firmware[1],
            i.firmware[2],
            i.wire_version,
            i.control_version,
            match i.link {
                LinkKind::Inline => "inline",
                LinkKind::Shared => "shared",
            },
            i.region,
            i.region_len,
            i.slots,
            i.block_rows,
            i.max_block_rows,
            i.channels,
            i.rate_hz,
            i.max_rate_hz,
            i.running,
            i.next_seq
        ),
        Reply::Applied { at_seq } => format!("at_seq={at_seq}"),
        Reply::Stats(s) => format!(
            "published={} adc_stalls={} overflows={} lent={} dropped={} commands={} \
             bytes_skipped={} repeats={}",
            s.published,
            s.adc_stalls,
            s.overflows,
            s.lent,
            s.dropped,
            s.commands,
            s.bytes_skipped,
            s.repeats
        ),
        Reply::Pong { host_ns, device_us } => format!("host_ns={host_ns} device_us={device_us}"),
        Reply::Error(e) => format!("error: {}", describe_error(e)),
    }
}

/// The writer to the device on the current connection, `None` while there is none: the thread
/// that reads the source fills it ([`DownSlot::refresh`]), a failed write empties it.
#[derive(Clone, Default)]
pub struct DownSlot(Arc<Mutex<Option<Box<dyn Write + Send>>>>);

impl DownSlot {
    /// A slot holding `w`.
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        DownSlot(Arc::new(Mutex::new(Some(w))))
    }

    /// Takes the down link of `src`'s connection if the slot is empty (after a reconnect).
    pub fn refresh(&self, src: &crate::source::Source) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            if let Ok(w) = src.down_link() {
                *slot = Some(w);
            }
        }
    }

    /// Drops the down link (its connection ended, or its reader did): a duplicated descriptor
    /// kept open would keep the connection itself open, so the device would never see the host
    /// go away.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = slot.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected to the device (yet)",
            ));
        };
        let sent = w.write_all(bytes).and_then(|()| w.flush());
        if sent.is_err() {
            *slot = None;
        }
        sent
    }
}

/// Sends commands down a link and waits for their replies. See the [module docs](super).
pub struct Controller {
    down: DownSlot,
    replies: Arc<Replies>,
    next_id: u32,
    /// How long one attempt waits.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Sends that were retries (their first attempt timed out), over all calls.
    pub resent: u64,
}

impl Controller {
    /// Commands go to `down`; replies are looked for in `replies`. Request ids start at a value
    /// drawn from the clock and the process id, so a new session does not reuse the id the
    /// device answered last (which it would answer from its cache without applying).
    pub fn new(down: DownSlot, replies: Arc<Replies>) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Controller {
            down,
            replies,
            next_id: nanos ^ std::process::id().rotate_left(16),
            timeout: TIMEOUT,
            retries: RETRIES,
            resent: 0,
        }
    }

    /// Sends `req` and returns its reply: up to `1 + retries` attempts with the same request id,
    /// each waiting `timeout`. A retry is preceded by [`MAX_FRAME`] zero bytes, which complete
    /// (and so discard) a cut-off or corrupt command the device may still be waiting on.
    /// `Reply::Error` comes back as [`ControlError::Device`].
    pub fn call(&mut self, req: Request) -> Result<Reply, ControlError> {
        self.call_while(req, &mut || {})
    }

    /// [`Controller::call`], running `idle` every 10 ms while it waits: a stream whose reader
    /// thread finds the replies must keep taking that thread's messages meanwhile, or a full
    /// queue would stop the reader, and with it the reply.
    pub fn call_while(
        &mut self,
        req: Request,
        idle: &mut dyn FnMut(),
    ) -> Result<Reply, ControlError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut frame = [0u8; MAX_FRAME];
        let frame = encode_request(id, &req, &mut frame)
            .map_err(|e| ControlError::Io(io::Error::other(e.to_string())))?;
        let mut retry = [0u8; 2 * MAX_FRAME];
        retry[MAX_FRAME..MAX_FRAME + frame.len()].copy_from_slice(frame);
        let retry = &retry[..MAX_FRAME + frame.len()];
        let mut failed = None;
        for attempt in 0..=self.retries {
            let sent = if attempt == 0 {
                self.down.send(frame)
            } else {
                self.resent += 1;
                self.down.send(retry)
            };
            // A failed send (a dropped connection) is retried like a lost reply: the reader
            // thread takes the new connection's down link meanwhile.
            if let Err(e) = sent {
                failed = Some(e);
                std::thread::sleep(self.timeout);
                continue;
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let slice = (Instant::now() + Duration::from_millis(10)).min(deadline);
                if let Some(reply) = self.replies.wait(id, slice) {
                    return match reply {
                        Reply::Error(e) => Err(ControlError::Device(e)),
                        r => Ok(r),
                    };
                }
                if Instant::now() >= deadline {
                    break;
                }
                idle();
            }
        }
        Err(match failed {
            Some(e) => ControlError::Io(e),
            None => ControlError::Timeout {
                id,
                attempts: self.retries + 1,
            },
        })
    }
}
