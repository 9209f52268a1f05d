//! A control session of its own: a connection to the device used only for commands (what
//! `dmapickle ctl` opens), with a thread that reads the data stream to find the replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::source::{Source, SourceOptions};
use crate::FrameReader;

use super::{Controller, DownSlot, Replies};

/// A controller for the device behind `src` sending through `down`, and the [`Replies`] its
/// reader must feed with the bytes it skips ([`FrameReader::with_skip_tap`]). The reader must
/// also [refresh](DownSlot::refresh) `down` after each message (a reconnecting source has no
/// connection before its first read), [clear](DownSlot::clear) it when a connection drops and
/// when it stops reading. `None` for a source with no down direction (a file, stdin).
pub fn attach(src: &Source, down: DownSlot) -> Option<(Controller, Arc<Replies>)> {
    if !src.spec().has_down_link() {
        return None;
    }
    down.refresh(src);
    let replies = Arc::new(Replies::default());
    Some((Controller::new(down, replies.clone()), replies))
}

/// A connection opened for commands; the data frames that arrive on it are read and dropped.
///
/// The connection is made at once (so a device that cannot be reached is an error of
/// [`Session::open`]), and made again whenever it ends while the session lives: a device may
/// refuse or reset a connection it gets while it is still closing the last one (the Ethernet
/// firmware has one socket for command connections), and a reset connection must not turn
/// every retry of [`Controller::call`] into "not connected". Retries keep their request id, and
/// the device answers a repeated id from its reply cache without applying it again, so a
/// command sent again on the new connection still takes effect once.
pub struct Session {
    /// Sends the commands.
    pub controller: Controller,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long the session's reader waits before it connects again after a connection ended or
/// could not be made.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

impl Session {
    /// Connects to `uri`; see the [type docs](Session) for when it connects again.
    pub fn open(uri: &str) -> Result<Session, Box<dyn std::error::Error + Send + Sync>> {
        let opts = SourceOptions {
            reconnect: false,
            // The reader looks at the stop flag this often: `dmapickle ctl` exits this long
            // after its reply at most (the default 100 ms was most of a command's time).
            poll: Duration::from_millis(10),
            ..SourceOptions::default()
        };
        let stop = opts.stop.clone();
        let src = Source::open_uri(uri, opts.clone())?;
        let down = DownSlot::default();
        let (controller, replies) = attach(&src, down.clone())
            .ok_or("this source cannot take commands (use tcp://, unix:// or serial://)")?;
        let uri = uri.to_owned();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dmapickle-ctl-reader".into())
            .spawn(move || {
                let mut next = Some(src);
                while !stopped.load(Ordering::Relaxed) {
                    let src = match next.take() {
                        Some(src) => src,
                        None => match Source::open_uri(&uri, opts.clone()) {
                            Ok(src) => src,
                            Err(_) => {
                                std::thread::sleep(RECONNECT_PAUSE);
                                continue;
                            }
                        },
                    };
                    down.refresh(&src);
                    let tap = replies.clone();
                    let mut reader =
                        FrameReader::new(src).with_skip_tap(Box::new(move |b| tap.feed(b)));
                    loop {
                        match reader.next_message() {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) if e.is_fatal() => break,
                            Err(_) => {}
                        }
                    }
                    // The connection ended: no command may go down it any more.
                    down.clear();
                    drop(reader);
                    if !stopped.load(Ordering::Relaxed) {
                        std::thread::sleep(RECONNECT_PAUSE);
                    }
                }
            })?;
        Ok(Session {
            controller,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmapickle_core::control::{encode_reply, parse, Direction, Parsed, Reply, Request};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A device that resets the first command connection (as the Ethernet firmware's single
    /// command socket does to a connection made while it still closes the last one) and answers
    /// on the second: the call succeeds, on the reconnected session.
    #[test]
    fn a_connection_reset_at_once_is_made_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let device = std::thread::spawn(move || {
            let (first, _) = listener.accept().unwrap();
            drop(first);
            let (mut conn, _) = listener.accept().unwrap();
            let mut held = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the host closed before a whole command came");
                held.extend_from_slice(&buf[..n]);
                let mut at = 0;
                while at < held.len() {
                    match parse(Direction::Down, &held[at..]) {
                        Parsed::NeedMore => break,
                        Parsed::Skip(n) => at += n,
                        Parsed::Frame { id, .. } => {
                            let mut out = [0u8; 64];
                            let reply = Reply::Pong {
                                host_ns: 5,
                                device_us: 7,
                            };
                            conn.write_all(encode_reply(id, &reply, &mut out).unwrap())
                                .unwrap();
                            return;
                        }
                    }
                }
                held.drain(..at);
            }
        });
        let mut session = Session::open(&format!("tcp://127.0.0.1:{port}")).unwrap();
        let reply = session
            .controller
            .call(Request::Ping { host_ns: 5 })
            .unwrap();
        assert_eq!(
            reply,
            Reply::Pong {
                host_ns: 5,
                device_us: 7
            }
        );
        device.join().unwrap();
    }
}
