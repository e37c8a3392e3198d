//! Multithreaded stress: threads allocate, hand their objects to the next
//! thread over a channel, and that thread checks and frees them.

mod common;

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::mpsc;

use common::{Rng, pools};
use rtmem_base::SpaceType;
use rtmem_freelist::FreeListAllocator;
use rtmem_freelist::large::LargeObjectAllocator;

const THREADS: usize = 4;

/// A block handed between threads: where, how long, and its fill byte.
struct Object(NonNull<u8>, usize, u8);

// SAFETY: the object is owned by whichever thread holds this value.
unsafe impl Send for Object {}

/// Each thread allocates `per_thread` objects with `alloc`, fills them, sends
/// them to the next thread, and checks and frees with `free` what it receives.
fn pass_around(
    per_thread: usize,
    max_size: usize,
    alloc: impl Fn(Layout) -> NonNull<u8> + Sync,
    free: impl Fn(NonNull<u8>) + Sync,
) {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Object>()).unzip();
    std::thread::scope(|s| {
        for (t, rx) in receivers.into_iter().enumerate() {
            let tx = senders[(t + 1) % THREADS].clone();
            let (alloc, free) = (&alloc, &free);
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let check_and_free = |o: Object| {
                    // SAFETY: the sender filled the object and gave it up.
                    let bytes = unsafe { std::slice::from_raw_parts(o.0.as_ptr(), o.1) };
                    assert!(
                        bytes.iter().all(|&b| b == o.2),
                        "an object changed in flight"
                    );
                    free(o.0);
                };
                for i in 0..per_thread {
                    let size = rng.range(1, max_size);
                    let p = alloc(Layout::from_size_align(size, 8).unwrap());
                    let byte = (t * 64 + i % 64) as u8;
                    // SAFETY: a fresh object of at least `size` bytes.
                    unsafe { p.as_ptr().write_bytes(byte, size) };
                    tx.send(Object(p, size, byte)).unwrap();
                    if i % 8 == 0 {
                        rx.try_iter().for_each(check_and_free);
                    }
                }
                drop(tx);
                // Every sender to this thread is done once all have dropped.
                rx.into_iter().for_each(check_and_free);
            });
        }
        drop(senders);
    });
}

#[test]
fn free_list_objects_freed_on_other_threads() {
    let pools = pools();
    let heap = FreeListAllocator::new(pools.clone(), SpaceType::NonMoving);
    pass_around(
        5_000,
        600,
        |l| heap.alloc(l).unwrap(),
        // SAFETY: each object came from `heap.alloc` and is freed once, by its receiver.
        |p| unsafe { heap.free(p) },
    );
    let mut live = 0;
    heap.walk(|_, _| live += 1);
    assert_eq!(live, 0);
    // One entirely free pool is kept for reuse; everything else went back.
    assert_eq!(heap.pool_count(), 1);
    assert_eq!(pools.used(SpaceType::NonMoving), pools.pool_size());
    heap.trim();
    assert_eq!(pools.used(SpaceType::NonMoving), 0);
    heap.flush_stats();
    let s = pools.stats().space(SpaceType::NonMoving);
    assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
    assert_eq!(s.objects_allocated, (THREADS * 5_000) as u64);
}

#[test]
fn large_objects_freed_on_other_threads() {
    let pools = pools();
    let large = LargeObjectAllocator::new(pools.clone(), SpaceType::Humongous);
    pass_around(
        50,
        1 << 20,
        |l| large.alloc(l).unwrap(),
        // SAFETY: each object came from `large.alloc` and is freed once, by its receiver.
        |p| unsafe { large.free(p) },
    );
    assert_eq!(large.pool_count(), 0);
    large.trim();
    assert_eq!(pools.used(SpaceType::Humongous), 0);
    let s = pools.stats().space(SpaceType::Humongous);
    assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
}
