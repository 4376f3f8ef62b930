//! Work stacks: one big stack per worker thread, on which a connection's
//! coroutine runs its protocol work, so that its own stack only has to hold
//! the wait.
//!
//! A stackful coroutine costs the pages of stack it has ever touched, and
//! the deepest thing a connection ever does — parsing a request, a WebSocket
//! publish whose JSON nests 128 levels — is many times deeper than what it
//! does while it waits. A coroutine that never yields in the middle of that
//! work does not need its own stack for it: any stack will do, as long as
//! the work is finished before the coroutine parks. So each worker thread
//! has one work stack, and [`on_work_stack`] switches to it (with `psm`, the
//! stack-switching crate under `stacker`) for the length of one call. A
//! thousand idle coroutines on a worker then share one deep stack instead of
//! each keeping their own deep pages — the same division of labour as an
//! async task, whose future keeps the state while the work runs on the
//! worker thread's stack.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// Size of each worker thread's work stack: 1 MiB of address space (plus a
/// guard page), resident only where touched. The deepest work measured (see
/// `examples/stack_depth.rs`) is a fraction of it even in a debug build.
pub const WORK_STACK: usize = 1 << 20;

/// The word painted over a work stack when measuring.
const PAINT: usize = 0xEEEE_EEEE_EEEE_EEEE_u64 as usize;

/// Whether work stacks are painted and measured (set by `serve_with` when
/// the coroutine stack size is odd, may's own signal for "measure").
static PAINTING: AtomicBool = AtomicBool::new(false);

/// Turns measuring on or off for work stacks created from now on.
pub(crate) fn set_painting(on: bool) {
    PAINTING.store(on, Ordering::Relaxed);
}

/// One mapped work stack with a guard page below it.
struct WorkStack {
    /// Lowest usable address (just above the guard page).
    base: *mut u8,
    size: usize,
    painted: bool,
}

impl WorkStack {
    fn map(size: usize) -> Option<WorkStack> {
        let page = 4096;
        // SAFETY: a fresh anonymous private mapping, then its lowest page
        // made inaccessible; both checked.
        unsafe {
            let total = size + page;
            let map = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return None;
            }
            if libc::mprotect(map, page, libc::PROT_NONE) != 0 {
                libc::munmap(map, total);
                return None;
            }
            let stack = WorkStack { base: map.cast::<u8>().add(page), size, painted: PAINTING.load(Ordering::Relaxed) };
            if stack.painted {
                stack.paint(size);
            }
            Some(stack)
        }
    }

    fn words(&self) -> *mut usize {
        self.base.cast::<usize>()
    }

    /// Paints the lowest `bytes` of the stack.
    fn paint(&self, bytes: usize) {
        for i in 0..bytes / size_of::<usize>() {
            // SAFETY: inside the mapping, which is not in use.
            unsafe { self.words().add(i).write_volatile(PAINT) };
        }
    }

    /// Bytes touched since the last paint (from the top), and repaints them.
    fn measure(&self) -> usize {
        let words = self.size / size_of::<usize>();
        // SAFETY: inside the mapping, which is not in use.
        let untouched = (0..words).take_while(|&i| unsafe { self.words().add(i).read_volatile() } == PAINT).count();
        let used = self.size - untouched * size_of::<usize>();
        self.paint(self.size);
        used
    }
}

thread_local! {
    /// This worker thread's work stack, mapped on first use.
    static STACK: RefCell<Option<WorkStack>> = const { RefCell::new(None) };
}

/// What became of work run on the work stack.
pub(crate) struct Worked<R> {
    /// The result, or `None` if the work panicked or no work stack could be
    /// mapped (the connection is then closed).
    pub(crate) result: Option<R>,
    /// Bytes of work stack it used, when measuring (else 0).
    pub(crate) depth: usize,
}

// ANCHOR: on_work_stack
/// Runs `work` on this worker thread's work stack and returns.
///
/// `work` must not yield (it never does: the core never blocks, and the
/// lab's reads and writes are non-blocking). A thread-local names the stack,
/// which is safe under `may`'s rule because nothing in here can yield, and
/// this function is never inlined into a caller that does. A panic is caught
/// on the work stack — unwinding must not cross the switch — and reported as
/// a failed result.
#[inline(never)]
pub(crate) fn on_work_stack<R>(work: impl FnOnce() -> R) -> Worked<R> {
    STACK.with(|cell| {
        // Borrowed for the whole call: a nested call (there is none) would
        // find it busy and fail instead of sharing the stack.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Worked { result: None, depth: 0 };
        };
        if slot.is_none() {
            *slot = WorkStack::map(WORK_STACK);
        }
        let Some(stack) = slot.as_ref() else {
            return Worked { result: None, depth: 0 };
        };
        // SAFETY: the stack is mapped, page aligned, a multiple of 16 bytes
        // and not in use; the callback cannot unwind (it catches panics).
        let caught: Result<R, Box<dyn Any + Send>> =
            unsafe { psm::on_stack(stack.base, stack.size, || panic::catch_unwind(AssertUnwindSafe(work))) };
        let depth = if stack.painted { stack.measure() } else { 0 };
        Worked { result: caught.ok(), depth }
    })
}
// ANCHOR_END: on_work_stack

/// Runs `work` right here, on the coroutine's own stack: the naive design,
/// which needs a coroutine stack as deep as the deepest request.
pub(crate) fn on_own_stack<R>(work: impl FnOnce() -> R) -> Worked<R> {
    Worked { result: panic::catch_unwind(AssertUnwindSafe(work)).ok(), depth: 0 }
}
