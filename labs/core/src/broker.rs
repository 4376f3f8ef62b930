//! The broker seam: what the hub needs from something that assigns ids and
//! carries messages between server processes, without doing any I/O itself.
//!
//! Without a broker (the default) the hub is the whole story: a publish takes
//! the topic's next id under the topic's lock and reaches every subscriber of
//! this process at once. With one, a publish is a request to something
//! outside — a Redis server, a round trip away — and the answer comes later.
//! The core still owns no socket and no thread; it only defines the two
//! halves of the conversation:
//!
//! * **out**: [`Broker::publish`] hands the message over with a [`Ticket`];
//!   the broker completes the ticket from wherever its I/O runs, and the
//!   ticket wakes the connection through the same [`Wake`] that publishers
//!   already use to wake subscribers. A connection waiting for its answer
//!   is just a connection with nothing to write yet: no runtime thread
//!   blocks on the round trip, whichever runtime it is.
//! * **in**: messages the broker has numbered (published on any instance)
//!   come back through [`Hub::apply`](crate::Hub::apply), which fans them out
//!   in id order, and reports a gap it cannot fill itself so that the broker
//!   fetches the missing range ([`Applied::Gap`]). A topic this process has
//!   not held before is filled from the broker once, when it is first used
//!   ([`Broker::load`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::hub::Wake;
use crate::stats::Refusal;

// ANCHOR: ticket
/// The answer to one publish handed to a broker, and how to tell its
/// connection that it has arrived.
///
/// The connection keeps one end and checks it when it is woken; the broker
/// keeps the other and calls [`complete`](Ticket::complete) once, from its
/// own thread.
pub struct Ticket {
    answer: Mutex<Option<Result<u64, Refusal>>>,
    waker: Arc<dyn Wake>,
    token: usize,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("token", &self.token).field("answer", &self.peek()).finish()
    }
}

impl Ticket {
    /// A ticket that wakes connection `token` through `waker`.
    pub fn new(waker: Arc<dyn Wake>, token: usize) -> Arc<Ticket> {
        Arc::new(Ticket { answer: Mutex::new(None), waker, token })
    }

    /// The broker's answer: the message's id, or why it was refused. Wakes
    /// the connection (after the answer is stored, so the wake finds it).
    pub fn complete(&self, answer: Result<u64, Refusal>) {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
        self.waker.wake(self.token);
    }

    /// The answer, if it has come; it stays there.
    pub fn peek(&self) -> Option<Result<u64, Refusal>> {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
// ANCHOR_END: ticket

// ANCHOR: broker
/// Something that numbers messages for several server processes and carries
/// them between them. An implementation does its I/O on threads of its own
/// and talks to the hub only through these calls, [`Ticket`]s and
/// [`Hub::apply`](crate::Hub::apply).
pub trait Broker: Send + Sync + fmt::Debug {
    /// Publishes `data` to `topic`. Must not block on the network: the
    /// answer goes into `ticket` (perhaps before this returns).
    fn publish(&self, topic: &str, data: String, ticket: Arc<Ticket>);

    /// What the broker holds of `topic`: its epoch, its newest id and the
    /// retained messages, oldest first. Called once for each topic this
    /// process creates, before anyone reads it: the one call that waits for
    /// the network (a topic is loaded once, on its first use here; every
    /// later message arrives through [`Hub::apply`](crate::Hub::apply)).
    fn load(&self, topic: &str) -> Result<Loaded, Refusal>;

    /// The names subscribed to `topic` on every process of the broker,
    /// sorted, given `local`, this process's. The default: just these.
    fn presence(&self, topic: &str, local: Vec<String>) -> Result<Vec<String>, Refusal> {
        let _ = topic;
        Ok(local)
    }
}
// ANCHOR_END: broker

/// A topic as the broker holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The topic's epoch; `None` if the broker has never numbered a message
    /// of it (or lost everything it had).
    pub epoch: Option<String>,
    /// The newest id (0: none).
    pub last_id: u64,
    /// The retained messages, `(id, data)`, oldest first.
    pub messages: Vec<(u64, String)>,
}

/// What [`Hub::apply`](crate::Hub::apply) did with a message from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Delivered to the topic's subscribers, in order.
    Delivered,
    /// This process does not hold the topic: nothing to do (it will be
    /// loaded from the broker if it is ever used here).
    NotHeld,
    /// Already had it (or an older one): ignored.
    Duplicate,
    /// Ids `from..=to` are missing before it: the broker should apply them
    /// first (or [`Hub::skip`](crate::Hub::skip) them if it no longer has
    /// them), then this one again.
    Gap {
        /// First missing id.
        from: u64,
        /// Last missing id.
        to: u64,
    },
}
