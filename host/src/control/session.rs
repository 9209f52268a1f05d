//! A control session of its own: a connection to the device used only for commands (what
//! `dmapickle ctl` opens), with a thread that reads the data stream to find the replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

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
pub struct Session {
    /// Sends the commands.
    pub controller: Controller,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Session {
    /// Connects to `uri` (no reconnect: a command is for the device as it is now).
    pub fn open(uri: &str) -> Result<Session, Box<dyn std::error::Error + Send + Sync>> {
        let opts = SourceOptions {
            reconnect: false,
            ..SourceOptions::default()
        };
        let stop = opts.stop.clone();
        let src = Source::open_uri(uri, opts)?;
        let (controller, replies) = attach(&src, DownSlot::default())
            .ok_or("this source cannot take commands (use tcp://, unix:// or serial://)")?;
        let thread = std::thread::Builder::new()
            .name("dmapickle-ctl-reader".into())
            .spawn(move || {
                let mut reader =
                    FrameReader::new(src).with_skip_tap(Box::new(move |b| replies.feed(b)));
                loop {
                    match reader.next_message() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) if e.is_fatal() => break,
                        Err(_) => {}
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
