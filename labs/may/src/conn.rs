//! One connection, one coroutine: a loop that does all the work it can
//! without waiting — on the worker's work stack — and then parks in
//! `wait_io` until the socket, a publisher or the timer wakes it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use may::io::{WaitIo, WaitIoWaker};
use may::net::TcpStream;
use rtlab_adapter::{READ_CHUNK, Secured, Step, Ticket, TlsSession, Unsent, session_for, step};
use rtlab_core::{Connection, Wake};

use crate::Shared;
use crate::stack::{self, Worked};

// ANCHOR: waker
/// The core's [`Wake`] for a coroutine parked in `wait_io`.
///
/// `may`'s [`WaitIoWaker`] makes the coroutine's `wait_io` return as if its
/// socket had an event — from any thread, and remembered if the coroutine is
/// not parked yet, so no wake is lost. The flag says *why* it woke (a
/// publisher or a timer, not the socket) and turns a burst of wakes into a
/// single one.
pub(crate) struct CoWaker {
    woken: AtomicBool,
    io: WaitIoWaker,
}

impl Wake for CoWaker {
    fn wake(&self, _token: usize) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.io.wakeup();
        }
    }
}
// ANCHOR_END: waker

// ANCHOR: coroutine
/// The connection coroutine. Everything that survives a wait is on the heap
/// (the [`Driver`]); the coroutine's own stack only ever holds this loop and
/// `may`'s parking, while each step runs on the worker's work stack.
pub(crate) fn run(stream: Arc<TcpStream>, shared: Arc<Shared>, ticket: Ticket) {
    let on_work = shared.work_stack;
    let waker = Arc::new(CoWaker { woken: AtomicBool::new(false), io: stream.waker() });
    let Some(Some(mut driver)) = work(on_work, || Driver::new(stream, waker, shared, ticket).map(Box::new)).result else {
        return;
    };
    loop {
        let worked = work(on_work, || driver.step());
        driver.deepest = driver.deepest.max(worked.depth);
        match worked.result {
            // `may` is cooperative: a client that keeps sending yields its
            // worker to the other coroutines now and then.
            Some(Step::Yield) => may::coroutine::yield_now(),
            Some(Step::Wait { .. }) => {
                driver.stream.wait_io();
            }
            Some(Step::Done) | None => break,
        }
    }
    work(on_work, move || driver.finish());
}

/// Runs `f` on the work stack, or on this coroutine's own stack (the naive
/// design, see [`Options::work_stack`](crate::Options::work_stack)).
fn work<R>(on_work_stack: bool, f: impl FnOnce() -> R) -> Worked<R> {
    if on_work_stack { stack::on_work_stack(f) } else { stack::on_own_stack(f) }
}
// ANCHOR_END: coroutine

/// One connection's state between steps.
struct Driver {
    stream: Arc<TcpStream>,
    waker: Arc<CoWaker>,
    shared: Arc<Shared>,
    key: u64,
    conn: Connection,
    unsent: Unsent,
    /// The TLS session, if the server speaks TLS.
    tls: Option<Box<TlsSession>>,
    /// The deadline the timer thread holds for this connection.
    armed: Option<Instant>,
    /// Deepest use of the work stack, when measuring.
    deepest: usize,
    /// Its place at the gate, given back when the driver is dropped.
    _admitted: Ticket,
}

impl Driver {
    fn new(stream: Arc<TcpStream>, waker: Arc<CoWaker>, shared: Arc<Shared>, ticket: Ticket) -> Option<Driver> {
        let tls = match session_for(shared.tls.as_ref()) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::warn!("cannot start a TLS session: {e}");
                return None;
            }
        };
        let key = shared.roster.join(waker.clone());
        let conn = Connection::new(shared.server.clone(), waker.clone(), 0, Instant::now());
        Some(Driver {
            stream,
            waker,
            shared,
            key,
            conn,
            unsent: Unsent::new(),
            tls,
            armed: None,
            deepest: 0,
            _admitted: ticket,
        })
    }

    // ANCHOR: step
    /// Does everything possible without waiting ([`rtlab_adapter::step`],
    /// reading into the worker's buffer), then makes sure the next deadline
    /// will wake the coroutine: `wait_io` has no timeout of its own.
    fn step(&mut self) -> Step {
        let now = Instant::now();
        let woken = self.waker.woken.swap(false, Ordering::AcqRel);
        let stopping = self.shared.roster.is_stopping();
        let (conn, unsent) = (&mut self.conn, &mut self.unsent);
        let mut socket = Secured::new(self.tls.as_deref_mut(), self.stream.inner());
        let next = READ_BUF.with_borrow_mut(|buf| step(conn, unsent, &mut socket, buf, now, woken, stopping));
        if let Step::Wait { deadline: Some(deadline), .. } = next {
            if self.armed.is_none_or(|a| a <= now || deadline < a) {
                self.shared.timers.wake_at(deadline, Arc::downgrade(&self.waker) as Weak<dyn Wake>);
                self.armed = Some(deadline);
            }
        }
        next
    }
    // ANCHOR_END: step

    /// The connection is over: leave the roster, drop the connection (which
    /// unsubscribes) and the socket; when measuring, report the work stack.
    fn finish(self) {
        self.shared.roster.leave(self.key);
        if self.deepest > 0 {
            println!("work stack used = {}", self.deepest);
        }
    }
}

// ANCHOR: read_buffer
thread_local! {
    /// One read buffer per worker thread, shared by all its coroutines.
    ///
    /// `may`'s caveat about thread-locals is about *yields*: a coroutine may
    /// resume on another thread, so a thread-local must never be held (or
    /// its address kept) across one. A step never yields, and borrows the
    /// buffer only for its own length.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}
// ANCHOR_END: read_buffer
