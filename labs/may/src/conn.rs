//! One connection, one coroutine: a loop that does all the work it can
//! without waiting — on the worker's work stack — and then parks in
//! `wait_io` until the socket, a publisher or the timer wakes it.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use may::io::{WaitIo, WaitIoWaker};
use may::net::TcpStream;
use rtlab_core::{Connection, Status, Unsent, Wake};

use crate::Shared;
use crate::stack::{self, Worked};

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Reads in a row before the coroutine yields to the others on its thread:
/// `may` is cooperative, and a client that keeps sending must not starve
/// the connections that share its worker.
const READS_BEFORE_YIELD: u32 = 16;

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
pub(crate) fn run(stream: Arc<TcpStream>, shared: Arc<Shared>) {
    let on_work = shared.work_stack;
    let waker = Arc::new(CoWaker { woken: AtomicBool::new(false), io: stream.waker() });
    let Some(mut driver) = work(on_work, || Box::new(Driver::new(stream, waker, shared))).result else { return };
    loop {
        let worked = work(on_work, || driver.step());
        driver.deepest = driver.deepest.max(worked.depth);
        match worked.result {
            Some(Next::Wait) => {
                driver.stream.wait_io();
            }
            Some(Next::Yield) => may::coroutine::yield_now(),
            Some(Next::Done) | None => break,
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

/// What the coroutine does after a step.
enum Next {
    /// Park until the socket, a publisher or the timer wakes it.
    Wait,
    /// Let the other coroutines of this thread run, then step again.
    Yield,
    /// The connection is over.
    Done,
}

/// One connection's state between steps.
struct Driver {
    stream: Arc<TcpStream>,
    waker: Arc<CoWaker>,
    shared: Arc<Shared>,
    key: u64,
    conn: Connection,
    unsent: Unsent,
    write_closed: bool,
    stop_seen: bool,
    /// The deadline the timer thread holds for this connection.
    armed: Option<Instant>,
    /// Reads since the coroutine last parked or yielded.
    reads: u32,
    /// Deepest use of the work stack, when measuring.
    deepest: usize,
}

impl Driver {
    fn new(stream: Arc<TcpStream>, waker: Arc<CoWaker>, shared: Arc<Shared>) -> Driver {
        let key = shared.roster.join(waker.clone());
        let conn = Connection::new(shared.server.clone(), waker.clone(), 0);
        Driver {
            stream,
            waker,
            shared,
            key,
            conn,
            unsent: Unsent::new(),
            write_closed: false,
            stop_seen: false,
            armed: None,
            reads: 0,
            deepest: 0,
        }
    }

    // ANCHOR: step
    /// Does everything possible without waiting: a stop, a wake, a passed
    /// deadline, writing until the socket is full, reading until it is empty.
    fn step(&mut self) -> Next {
        let conn = &mut self.conn;
        loop {
            let now = Instant::now();
            if !self.stop_seen && self.shared.stopping.load(Ordering::SeqCst) {
                self.stop_seen = true;
                conn.shutdown(now);
            }
            let due = conn.next_deadline().is_some_and(|d| d <= now);
            if self.waker.woken.swap(false, Ordering::AcqRel) || due {
                conn.on_tick(now);
            }

            // Write until everything is out or the socket is full.
            while self.unsent.refill(conn) {
                match self.unsent.write_to(conn, &mut self.stream.inner()) {
                    Ok(0) => return Next::Done,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Done,
                }
            }
            match conn.status() {
                Status::Closed => return Next::Done,
                Status::Closing if self.unsent.is_empty() && !self.write_closed => {
                    // Everything is written: send FIN, then drain input until
                    // the peer closes too (or the linger deadline passes).
                    self.write_closed = true;
                    if self.stream.shutdown(Shutdown::Write).is_err() {
                        return Next::Done;
                    }
                }
                _ => {}
            }

            // Read once; if anything came, go round again (answer it, read more).
            if conn.wants_read() {
                match read_into(&self.stream, conn) {
                    Ok(_) => {
                        self.reads += 1;
                        if self.reads == READS_BEFORE_YIELD {
                            self.reads = 0;
                            return Next::Yield;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Next::Done,
                }
            }

            // Nothing left to do now: make sure the next deadline will wake
            // us, then park.
            if let Some(deadline) = conn.next_deadline() {
                if deadline <= Instant::now() {
                    continue;
                }
                if self.armed.is_none_or(|a| a <= now || deadline < a) {
                    self.shared.timers.wake_at(deadline, Arc::downgrade(&self.waker) as Weak<dyn Wake>);
                    self.armed = Some(deadline);
                }
            }
            self.reads = 0;
            return Next::Wait;
        }
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
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads once from the non-blocking socket and hands the bytes to the core.
///
/// `may`'s caveat about thread-locals is about *yields*: a coroutine may
/// resume on another thread, so a thread-local must never be held (or its
/// address kept) across one. This runs inside a step, which never yields,
/// and is never inlined, so the buffer is borrowed and returned between two
/// yields.
#[inline(never)]
fn read_into(stream: &TcpStream, conn: &mut Connection) -> io::Result<usize> {
    READ_BUF.with_borrow_mut(|buf| {
        let n = stream.inner().read(buf)?;
        if n == 0 {
            conn.on_eof(Instant::now());
        } else {
            conn.on_read(&buf[..n], Instant::now());
        }
        Ok(n)
    })
}
// ANCHOR_END: read_buffer
