//! The reader thread and its handoff to Python: the thread reads and validates frames (the GIL
//! is never held while it waits for bytes) and queues messages; `next_batch` takes them in
//! batches with the GIL released.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::source::{Source, SourceEvent};
use crate::stream::{Counters, FrameReader};
use crate::Message;

/// What the reader thread sends to `next`.
pub(super) enum Item {
    /// A delivered message.
    Message(Message),
    /// The stream ended; `Some` if it failed.
    End(Option<String>),
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) counters: Counters,
    pub(super) refused_last: Option<String>,
    pub(super) reconnects: u64,
    pub(super) disconnects: u64,
    pub(super) events: Vec<String>,
    /// Why the source is not connected right now (`None` once it is, or before it tried).
    pub(super) waiting: Option<String>,
    /// Whether it ever connected.
    pub(super) connected: bool,
}

/// Hands messages from the reader thread to Python in batches: the reader blocks only when
/// `cap` messages wait, Python takes everything waiting at once, and each side wakes the other
/// only when it is actually waiting. So a consumer that keeps up pays about one thread wake-up
/// per batch, not one per message.
pub(super) struct Handoff {
    state: Mutex<HandoffState>,
    ready: Condvar,
    space: Condvar,
    cap: usize,
}

#[derive(Default)]
struct HandoffState {
    items: VecDeque<Item>,
    closed: bool,
    consumer_waiting: bool,
    producer_waiting: bool,
}

impl Handoff {
    pub(super) fn new(cap: usize) -> Self {
        Handoff {
            state: Mutex::new(HandoffState::default()),
            ready: Condvar::new(),
            space: Condvar::new(),
            cap: cap.max(1),
        }
    }

    /// Queue `items` (one lock for all of them), waiting until they fit under `cap` (or the
    /// queue is empty: a batch is at most `cap` long, see [`Handoff::cap`]); false if the
    /// consumer is gone.
    pub(super) fn push(&self, items: &mut Vec<Item>) -> bool {
        let mut s = lock(&self.state);
        while !s.items.is_empty() && s.items.len() + items.len() > self.cap && !s.closed {
            s.producer_waiting = true;
            s = self.space.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.closed {
            return false;
        }
        s.items.extend(items.drain(..));
        if s.consumer_waiting {
            s.consumer_waiting = false;
            self.ready.notify_one();
        }
        true
    }

    /// Most messages that may wait: the largest batch the producer should push.
    pub(super) fn cap(&self) -> usize {
        self.cap
    }

    /// Everything queued, waiting up to `tick` for something (may return empty).
    pub(super) fn take_all(&self, tick: Duration) -> VecDeque<Item> {
        let mut s = lock(&self.state);
        if s.items.is_empty() && !s.closed {
            s.consumer_waiting = true;
            s = self
                .ready
                .wait_timeout(s, tick)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.consumer_waiting = false;
        }
        let batch = std::mem::take(&mut s.items);
        if s.producer_waiting {
            s.producer_waiting = false;
            self.space.notify_one();
        }
        batch
    }

    /// The consumer is gone: drop what waits and let the producer go.
    pub(super) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.items.clear();
        self.space.notify_all();
    }

    pub(super) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn note_event(e: &SourceEvent, shared: &Mutex<Shared>) {
    let mut s = lock(shared);
    match e {
        SourceEvent::Connected { .. } if s.disconnects > 0 => s.reconnects += 1,
        SourceEvent::Connected { .. } | SourceEvent::Waiting { .. } => {}
        SourceEvent::Disconnected { .. } => s.disconnects += 1,
    }
    match e {
        SourceEvent::Connected { .. } => {
            s.connected = true;
            s.waiting = None;
        }
        SourceEvent::Waiting { reason } | SourceEvent::Disconnected { reason, .. } => {
            s.waiting = Some(reason.clone());
        }
    }
    if s.events.len() < 256 {
        s.events.push(e.to_string());
    }
}

/// Starts the thread that runs `reader` until its source ends (or the consumer closes the
/// handoff), keeping `shared`'s counters and last refusal current.
/// Most frames the reader thread takes from the stream per batch.
const BATCH_MAX: usize = 1024;

pub(super) fn spawn_reader(
    mut reader: FrameReader<Source>,
    tx: Arc<Handoff>,
    sh: Arc<Mutex<Shared>>,
    down: Option<crate::control::DownSlot>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dmapickle-reader".into())
        .spawn(move || {
            read_all(&mut reader, &tx, &sh, down.as_ref());
            // The connection must close when the reader stops, whatever holds the controller.
            if let Some(down) = &down {
                down.clear();
            }
        })
}

fn read_all(
    reader: &mut FrameReader<Source>,
    tx: &Handoff,
    sh: &Mutex<Shared>,
    down: Option<&crate::control::DownSlot>,
) {
    let mut batch = crate::stream::Batch::new();
    let mut items = Vec::new();
    loop {
        // Every frame already read, in one go: one counters update and one handoff per batch.
        let next = reader.next_batch(&mut batch, BATCH_MAX.min(tx.cap()));
        // A reconnecting source has a new connection, and so a new down link, now and then.
        if let Some(down) = down {
            down.refresh(reader.get_ref());
        }
        {
            let mut s = lock(sh);
            s.counters = reader.counters();
            for outcome in batch.drain() {
                match outcome {
                    Ok(m) => items.push(Item::Message(m)),
                    Err(e) => s.refused_last = Some(e.to_string()),
                }
            }
        }
        let end = match next {
            Ok(true) => None,
            Ok(false) => Some(None),
            Err(e) => Some(Some(e.to_string())),
        };
        if let Some(end) = &end {
            items.push(Item::End(end.clone()));
        }
        if (!items.is_empty() && !tx.push(&mut items)) || end.is_some() {
            break;
        }
    }
}
