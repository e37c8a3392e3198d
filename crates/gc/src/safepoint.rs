//! Safepoints: stop-the-world, per-thread handshakes, and native code.
//!
//! Every mutator thread holds a [`SafepointHandle`] that owns its collector
//! state `D` (its TLAB, barrier buffers, roots...). The protocol decides who
//! may touch that state when:
//!
//! - A running mutator owns its state. It calls [`SafepointHandle::poll`]
//!   regularly: one relaxed load of a global flag, with a cold slow path.
//! - **Stop-the-world** ([`Safepoints::stop_the_world`]): the requester sets
//!   the flag and waits until every other mutator is *parked* (blocked in its
//!   slow path) or *in native code*. The returned [`StoppedWorld`] then has
//!   exclusive access to every mutator's state, and resumes the world when
//!   dropped.
//! - **Handshake** ([`Safepoints::handshake`]): a closure runs once for every
//!   mutator without stopping the world: a running mutator runs it itself at
//!   its next poll; for a mutator in native code the requester runs it on the
//!   mutator's behalf.
//! - **Native code** ([`SafepointHandle::enter_native`]): a mutator in native
//!   code counts as stopped and must not touch managed state; when it comes
//!   back while the world is stopped (or while a requester is running a
//!   handshake for it), it blocks until that is over.
//!
//! Requests are serialized: a mutator that asks for a stop-the-world or a
//! handshake while another is under way first takes part in that one (parks
//! or runs the handshake), so two mutators triggering collections at once
//! never deadlock. The protocol is model-checked with loom (`tests/loom.rs`).

use std::fmt;

use crate::sync::{
    Arc, AtomicBool, AtomicU8, Condvar, Mutex, MutexGuard,
    Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst},
    UnsafeCell,
};

// A mutator's status word. Every transition is a single read-modify-write
// of this word (or a store under the world lock), so the protocol needs no
// ordering between two locations (no Dekker-style store-then-load).
/// Running managed code: owns its state.
const RUNNING: u8 = 0;
/// In native code: counts as stopped, does not touch its state.
const NATIVE: u8 = 1;
/// Blocked in its slow path while the world is stopped.
const PARKED: u8 = 2;
/// In native code and claimed by a requester, who may touch its state; the
/// mutator cannot leave native code until the claim is released.
const CLAIMED: u8 = 3;
/// Flag on RUNNING: a requester is waiting for this mutator; entering native
/// code must wake it.
const WAITED: u8 = 4;
const STATE: u8 = 3;

/// Immutable once published, so a plain `std` `Arc` (loom's cannot hold `dyn`).
type HandshakeFn<D> = std::sync::Arc<dyn Fn(&mut D) + Send + Sync>;

/// One registered mutator, shared between its thread and requesters.
struct Slot<D> {
    status: AtomicU8,
    /// A handshake has not run for this mutator yet (changed under the world lock).
    pending: AtomicBool,
    data: UnsafeCell<D>,
}

impl<D> Slot<D> {
    /// Called by a requester holding the world lock: whether the mutator is
    /// stopped (parked, or in native code and now claimed). A running mutator
    /// is flagged as waited for, so that entering native code wakes us.
    fn claim_stopped(&self) -> bool {
        let mut s = self.status.load(Acquire);
        loop {
            let (next, stopped) = match s & STATE {
                PARKED | CLAIMED => return true,
                NATIVE => (CLAIMED, true),
                _ if s & WAITED != 0 => return false,
                _ => (s | WAITED, false),
            };
            match self.status.compare_exchange(s, next, AcqRel, Acquire) {
                Ok(_) => return stopped,
                Err(now) => s = now,
            }
        }
    }

    /// Releases a claim taken by `claim_stopped` (the caller notifies).
    fn release_claim(&self) {
        let _ = self
            .status
            .compare_exchange(CLAIMED, NATIVE, AcqRel, Acquire);
    }
}

struct World<D> {
    stopped: bool,
    handshake: Option<HandshakeFn<D>>,
    mutators: Vec<Arc<Slot<D>>>,
}

impl<D> World<D> {
    fn busy(&self) -> bool {
        self.stopped || self.handshake.is_some()
    }
}

/// The safepoint protocol for one heap: the registry of mutators and the
/// global request flag they poll. Cloning gives another handle on the same
/// protocol.
pub struct Safepoints<D> {
    shared: Arc<Shared<D>>,
}

struct Shared<D> {
    requested: AtomicBool,
    world: Mutex<World<D>>,
    changed: Condvar,
}

impl<D> Clone for Safepoints<D> {
    fn clone(&self) -> Self {
        Safepoints {
            shared: self.shared.clone(),
        }
    }
}

impl<D> Shared<D> {
    fn wait<'g>(&self, guard: MutexGuard<'g, World<D>>) -> MutexGuard<'g, World<D>> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// SAFETY: the mutator states `D` inside the slots are only accessed by their
// owning thread or, under the protocol, by one requester at a time; `D: Send`
// is all that moving that access between threads needs.
unsafe impl<D: Send> Sync for Shared<D> {}
// SAFETY: as above.
unsafe impl<D: Send> Send for Shared<D> {}

/// A mutator's membership in the protocol, owning its collector state `D`.
pub struct SafepointHandle<D> {
    slot: Arc<Slot<D>>,
    safepoints: Safepoints<D>,
}

// SAFETY: the handle is the owning thread's access to its slot; moving it to
// another thread moves that ownership (`D: Send`).
unsafe impl<D: Send> Send for SafepointHandle<D> {}

/// The world, stopped: every mutator is parked or in native code. Dropping it
/// resumes them.
pub struct StoppedWorld<'a, D> {
    safepoints: &'a Shared<D>,
    requester: Option<&'a mut SafepointHandle<D>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<D> Default for Safepoints<D> {
    fn default() -> Self {
        Safepoints::new()
    }
}

impl<D> Safepoints<D> {
    /// A protocol with no mutators.
    pub fn new() -> Safepoints<D> {
        Safepoints {
            shared: Arc::new(Shared {
                requested: AtomicBool::new(false),
                world: Mutex::new(World {
                    stopped: false,
                    handshake: None,
                    mutators: Vec::new(),
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// Registers a mutator owning `data`. Blocks while the world is stopped or
    /// a handshake is under way, so a new mutator never misses either.
    pub fn register(&self, data: D) -> SafepointHandle<D> {
        let slot = Arc::new(Slot {
            status: AtomicU8::new(RUNNING),
            pending: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        });
        let mut w = lock(&self.shared.world);
        while w.busy() {
            w = self.shared.wait(w);
        }
        w.mutators.push(slot.clone());
        SafepointHandle {
            slot,
            safepoints: self.clone(),
        }
    }

    /// Whether a stop-the-world or a handshake is requested now.
    #[inline]
    pub fn requested(&self) -> bool {
        self.shared.requested.load(SeqCst)
    }

    /// The number of registered mutators.
    pub fn mutator_count(&self) -> usize {
        lock(&self.shared.world).mutators.len()
    }

    /// Waits until no request is under way; a requesting mutator takes part
    /// in the current one meanwhile. Returns with the world lock held.
    fn claim<'a>(
        &'a self,
        requester: &mut Option<&mut SafepointHandle<D>>,
    ) -> MutexGuard<'a, World<D>> {
        let mut w = lock(&self.shared.world);
        while w.busy() {
            match requester {
                Some(h) => {
                    drop(w);
                    h.slow_poll();
                    w = lock(&self.shared.world);
                }
                None => w = self.shared.wait(w),
            }
        }
        w
    }

    /// Stops every mutator but `requester` (the calling mutator, if the
    /// caller is one) and returns when all are parked or in native code.
    /// A thread that owns a registered handle must pass it (or be in native
    /// code): a running handle that never polls is never stopped.
    pub fn stop_the_world<'a>(
        &'a self,
        mut requester: Option<&'a mut SafepointHandle<D>>,
    ) -> StoppedWorld<'a, D> {
        let mut w = self.claim(&mut requester);
        w.stopped = true;
        self.shared.requested.store(true, SeqCst);
        let me = requester.as_ref().map(|h| Arc::as_ptr(&h.slot));
        loop {
            // Visit every mutator (no short-circuit): each native one is
            // claimed and each running one flagged on every pass.
            let stopped = w
                .mutators
                .iter()
                .filter(|s| Some(Arc::as_ptr(s)) != me)
                .fold(true, |all, s| s.claim_stopped() & all);
            if stopped {
                break;
            }
            w = self.shared.wait(w);
        }
        drop(w);
        tracing::trace!("world stopped");
        StoppedWorld {
            safepoints: &self.shared,
            requester,
        }
    }

    /// Runs `f` once on the state of every mutator, without stopping the
    /// world; returns when it has run for all of them. Running mutators run
    /// it at their next poll; for mutators in native code the caller runs it.
    ///
    /// A thread that owns a registered handle must pass it as `requester`
    /// (as for [`stop_the_world`](Self::stop_the_world)): otherwise the
    /// request waits for that handle to poll, which it never will.
    pub fn handshake(
        &self,
        mut requester: Option<&mut SafepointHandle<D>>,
        f: impl Fn(&mut D) + Send + Sync + 'static,
    ) {
        let f: HandshakeFn<D> = std::sync::Arc::new(f);
        let mut w = self.claim(&mut requester);
        let me = requester.as_ref().map(|h| Arc::as_ptr(&h.slot));
        if let Some(h) = requester {
            // SAFETY: the requester holds its own handle mutably.
            h.slot.data.with_mut(|d| f(unsafe { &mut *d }));
        }
        for s in &w.mutators {
            if Some(Arc::as_ptr(s)) != me {
                s.pending.store(true, SeqCst);
            }
        }
        w.handshake = Some(f.clone());
        self.shared.requested.store(true, SeqCst);
        loop {
            let mut done = true;
            for s in w.mutators.iter().filter(|s| s.pending.load(SeqCst)) {
                if s.claim_stopped() {
                    // SAFETY: claimed: the mutator is in native code, does not
                    // touch its state there, and cannot leave until released.
                    s.data.with_mut(|d| f(unsafe { &mut *d }));
                    s.pending.store(false, SeqCst);
                    s.release_claim();
                } else {
                    done = false;
                }
            }
            // Mutators waiting to leave native code may go on.
            self.shared.changed.notify_all();
            if done {
                break;
            }
            w = self.shared.wait(w);
        }
        w.handshake = None;
        self.shared.requested.store(w.stopped, SeqCst);
        self.shared.changed.notify_all();
    }
}

impl<D> SafepointHandle<D> {
    /// A safepoint: one load when nothing is requested.
    #[inline(always)]
    pub fn poll(&mut self) {
        if self.safepoints.shared.requested.load(Relaxed) {
            self.slow_poll();
        }
    }

    /// Parks while the world is stopped and runs pending handshakes.
    #[cold]
    #[inline(never)]
    fn slow_poll(&mut self) {
        let sp = &*self.safepoints.shared;
        let mut w = lock(&sp.world);
        loop {
            if self.slot.pending.load(SeqCst)
                && let Some(f) = w.handshake.clone()
            {
                drop(w);
                // SAFETY: our own state, on our own thread, while running.
                self.slot.data.with_mut(|d| f(unsafe { &mut *d }));
                w = lock(&sp.world);
                self.slot.pending.store(false, SeqCst);
                sp.changed.notify_all();
                continue;
            }
            if w.stopped {
                self.slot.status.store(PARKED, Release);
                sp.changed.notify_all();
                while w.stopped {
                    w = sp.wait(w);
                }
                self.slot.status.store(RUNNING, Release);
                continue;
            }
            // Nobody waits for us any more.
            self.slot.status.fetch_and(!WAITED, Relaxed);
            return;
        }
    }

    /// This mutator's collector state.
    #[inline]
    pub fn data(&mut self) -> &mut D {
        // SAFETY: while running, a mutator owns its state; `&mut self`
        // excludes any other access through this handle.
        self.slot.data.with_mut(|d| unsafe { &mut *d })
    }

    /// The protocol this handle belongs to.
    pub fn safepoints(&self) -> &Safepoints<D> {
        &self.safepoints
    }

    /// Enters native code: from now on the mutator counts as stopped and must
    /// not touch managed memory until [`leave_native`](Self::leave_native).
    pub fn enter_native(&mut self) {
        let old = self.slot.status.swap(NATIVE, AcqRel);
        debug_assert_eq!(old & STATE, RUNNING, "enter_native while not running");
        if old & WAITED != 0 {
            // A requester is waiting for us: wake it under its lock.
            let _w = lock(&self.safepoints.shared.world);
            self.safepoints.shared.changed.notify_all();
        }
    }

    /// Leaves native code; blocks while a requester has claimed this mutator
    /// (the world is stopped, or a handshake runs on its behalf).
    pub fn leave_native(&mut self) {
        let sp = &*self.safepoints.shared;
        while let Err(status) = self
            .slot
            .status
            .compare_exchange(NATIVE, RUNNING, AcqRel, Acquire)
        {
            debug_assert_eq!(status, CLAIMED, "leave_native while not in native code");
            let mut w = lock(&sp.world);
            while self.slot.status.load(Acquire) == CLAIMED {
                w = sp.wait(w);
            }
        }
        self.poll();
    }

    /// Runs `f` as native code (see [`enter_native`](Self::enter_native)).
    pub fn in_native<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.enter_native();
        let r = f();
        self.leave_native();
        r
    }

    /// Leaves the protocol and gives back the mutator's state.
    pub fn unregister(mut self) -> D {
        self.detach();
        let slot = self.slot.clone();
        drop(self);
        match Arc::try_unwrap(slot) {
            Ok(slot) => slot.data.into_inner(),
            Err(_) => unreachable!("a detached slot has no other owner"),
        }
    }

    /// Leaves the registry. A pending handshake runs first; a stop-the-world
    /// under way stops waiting for this mutator once it is gone (the caller
    /// has already given back whatever the collector would take from it).
    fn detach(&mut self) {
        let sp = self.safepoints.shared.clone();
        let mut w = lock(&sp.world);
        if self.slot.pending.load(SeqCst) && w.handshake.is_some() {
            drop(w);
            self.slow_poll();
            w = lock(&sp.world);
        }
        w.mutators.retain(|s| !Arc::ptr_eq(s, &self.slot));
        sp.changed.notify_all();
    }
}

impl<D> Drop for SafepointHandle<D> {
    fn drop(&mut self) {
        let registered = {
            let w = lock(&self.safepoints.shared.world);
            w.mutators.iter().any(|s| Arc::ptr_eq(s, &self.slot))
        };
        if registered {
            self.detach();
        }
    }
}

impl<D: Send> StoppedWorld<'_, D> {
    /// Calls `f` with the state of every mutator, the requester's included.
    pub fn for_each_mutator(&mut self, mut f: impl FnMut(&mut D)) {
        let w = lock(&self.safepoints.world);
        for s in &w.mutators {
            // SAFETY: the world is stopped: every other mutator is parked or
            // in native code and claimed, and touches no state until we
            // resume it; the requester's handle is borrowed mutably by `self`.
            s.data.with_mut(|d| f(unsafe { &mut *d }));
        }
    }

    /// The number of mutators.
    pub fn mutator_count(&self) -> usize {
        lock(&self.safepoints.world).mutators.len()
    }

    /// The requesting mutator's handle, if a mutator requested the stop.
    pub fn requester(&mut self) -> Option<&mut SafepointHandle<D>> {
        self.requester.as_deref_mut()
    }
}

impl<D> Drop for StoppedWorld<'_, D> {
    fn drop(&mut self) {
        let mut w = lock(&self.safepoints.world);
        w.stopped = false;
        for s in &w.mutators {
            s.release_claim();
        }
        self.safepoints
            .requested
            .store(w.handshake.is_some(), SeqCst);
        self.safepoints.changed.notify_all();
        tracing::trace!("world resumed");
    }
}

impl<D> fmt::Debug for Shared<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Safepoints")
            .field("requested", &self.requested.load(SeqCst))
            .finish_non_exhaustive()
    }
}

impl<D> fmt::Debug for SafepointHandle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafepointHandle")
            .field("status", &self.slot.status.load(SeqCst))
            .finish_non_exhaustive()
    }
}
