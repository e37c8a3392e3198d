//! Multithreaded stress: threads allocate, hand objects to the next thread
//! of a ring over `std::sync::mpsc`, and free what they receive (through
//! their own handle, whose remote path it is, or through the shared
//! allocator), checking every object's contents on the way. At the end,
//! once every handle is dropped, every pool is back with the pool manager and
//! the space's statistics show nothing live.

mod common;
use common::{Rng, pattern};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::mpsc;

use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_runslots::RunSlotsAllocator;

const SPACE: SpaceType = SpaceType::RuntimeInternal;

fn fill(p: NonNull<u8>, size: usize) {
    // SAFETY: a fresh allocation of at least `size` bytes.
    unsafe { p.as_ptr().write_bytes(pattern(p.addr().get()), size) };
}

fn check(addr: usize, size: usize) {
    // SAFETY: a live object of at least `size` bytes, filled by `fill`.
    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
    assert!(
        bytes.iter().all(|&b| b == pattern(addr)),
        "object {addr:#x} of {size} bytes was overwritten"
    );
}

fn allocator() -> (Arc<PoolManager>, Arc<RunSlotsAllocator>) {
    let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
    let slots = Arc::new(RunSlotsAllocator::new(pools.clone(), SPACE));
    (pools, slots)
}

#[test]
fn objects_handed_between_threads_are_freed_there_and_every_pool_comes_back() {
    const THREADS: usize = 4;
    const ROUNDS: usize = if cfg!(debug_assertions) {
        6_000
    } else {
        60_000
    };
    let (pools, slots) = allocator();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<(usize, usize)>())
        .unzip();
    // Thread t receives on channel t and sends on channel t + 1 (mod THREADS).
    let mut senders: Vec<_> = senders.into_iter().map(Some).collect();
    senders.rotate_left(1);
    std::thread::scope(|s| {
        for (t, (receiver, next)) in receivers.into_iter().zip(senders.iter_mut()).enumerate() {
            let next = next.take().unwrap();
            let slots = &slots;
            s.spawn(move || {
                let mut local = slots.local();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                let mut mine: Vec<(usize, usize)> = Vec::new();
                let free_received =
                    |local: &mut rtmem_runslots::LocalRuns, (addr, size): (usize, usize)| {
                        check(addr, size);
                        let p = NonNull::new(addr as *mut u8).unwrap();
                        // SAFETY: a live object handed over by the previous thread.
                        unsafe {
                            if rng_shared(addr) {
                                slots.free(p)
                            } else {
                                local.free(p)
                            }
                        }
                    };
                for round in 0..ROUNDS {
                    let size = 1 + rng.below(256) as usize;
                    let p = local.alloc(size).unwrap();
                    fill(p, size);
                    if rng.below(2) == 0 {
                        next.send((p.addr().get(), size)).unwrap();
                    } else {
                        mine.push((p.addr().get(), size));
                    }
                    if mine.len() > 500 {
                        let (addr, size) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        check(addr, size);
                        // SAFETY: live, ours, freed once.
                        unsafe { local.free(NonNull::new(addr as *mut u8).unwrap()) };
                    }
                    while let Ok(object) = receiver.try_recv() {
                        free_received(&mut local, object);
                    }
                    if round % 5_000 == 4_999 {
                        local.flush();
                    }
                }
                // Stop sending, then take everything the previous thread sends
                // until it stops too.
                drop(next);
                for (addr, size) in mine {
                    check(addr, size);
                    // SAFETY: live, ours, freed once.
                    unsafe { local.free(NonNull::new(addr as *mut u8).unwrap()) };
                }
                for object in receiver {
                    free_received(&mut local, object);
                }
            });
        }
    });
    let stats = slots.stats();
    assert_eq!(stats.objects_allocated, (THREADS * ROUNDS) as u64);
    assert_eq!(
        (stats.live_objects(), stats.live_bytes()),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.metadata, 0, "every run went back");
    assert_eq!(
        pools.used(SPACE),
        0,
        "every pool went back to the pool manager"
    );
}

/// Whether the receiver of the object at `addr` frees it through the shared
/// allocator rather than its handle (a quarter of them).
fn rng_shared(addr: usize) -> bool {
    (addr >> 3).is_multiple_of(4)
}

/// Walks, sweeps (keeping everything) and `contains` queries from one thread
/// while others allocate and free: memory-safe, and exact once they stop.
#[test]
fn walking_and_sweeping_while_threads_allocate_and_free() {
    const ROUNDS: usize = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    let (pools, slots) = allocator();
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (slots, done) = (&slots, &done);
            s.spawn(move || {
                let mut local = slots.local();
                let mut rng = Rng(t + 7);
                let mut live = Vec::new();
                for _ in 0..ROUNDS {
                    let size = 1 + rng.below(256) as usize;
                    let p = local.alloc(size).unwrap();
                    fill(p, size);
                    live.push((p, size));
                    if live.len() > 200 {
                        let (p, size) = live.swap_remove(rng.below(live.len() as u64) as usize);
                        check(p.addr().get(), size);
                        // SAFETY: live, ours, freed once.
                        unsafe { local.free(p) };
                    }
                }
                for (p, size) in live {
                    check(p.addr().get(), size);
                    // SAFETY: live, ours, freed once.
                    unsafe { local.free(p) };
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Release);
            });
        }
        let mut walks = 0;
        while done.load(std::sync::atomic::Ordering::Acquire) < 2 {
            // A walk is not a snapshot (the threads go on meanwhile), so only
            // what holds for every slot is checked.
            slots.walk(|p, size| {
                assert!(
                    RunSlotsAllocator::size_class(size) == Some(size) && p.addr().get() % 8 == 0
                );
            });
            assert_eq!(slots.sweep(|_, _| true).objects, 0);
            walks += 1;
        }
        assert!(walks > 0);
    });
    let mut seen = 0;
    slots.walk(|_, _| seen += 1);
    assert_eq!(seen, 0, "nothing is live once the threads are done");
    assert_eq!(pools.used(SPACE), 0);
}
