//! The runtime-internal space as the program's `#[global_allocator]`: a heavy
//! std workload on several threads (maps, strings, vectors growing and
//! shrinking, objects freed on other threads), then `MemStats` must balance.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

use rtmem_base::SpaceType;
use rtmem_spaces::InternalGlobalAlloc;

#[global_allocator]
static GLOBAL: InternalGlobalAlloc = InternalGlobalAlloc::new(8 << 30);

const THREADS: usize = 4;
const ROUNDS: usize = 20;
/// Allocations a round makes at the least: 2,000 `format!` strings, 5,000
/// `to_string`s and 200 boxes sent away (maps, vectors and nodes come on top).
const MIN_ALLOCS_PER_ROUND: u64 = 7_200;

fn live() -> (u64, u64, u64) {
    let snap = GLOBAL
        .snapshot()
        .expect("the space is built by the first allocation");
    let s = snap.space(SpaceType::RuntimeInternal);
    (s.live_bytes(), s.bytes_allocated, s.objects_allocated)
}

/// One thread's work; everything it allocates is freed before it returns,
/// except the boxes it sends away (the receiver frees those).
fn workload(seed: u64, send: mpsc::Sender<Vec<Box<[u8]>>>) -> u64 {
    let mut checksum = 0u64;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..ROUNDS {
        let mut map: HashMap<u64, String> = HashMap::new();
        let mut tree: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for i in 0..2_000 {
            let k = next() % 5_000;
            map.insert(k, format!("value-{k}-{i}"));
            tree.entry(format!("key{}", k % 700))
                .or_default()
                .push(i as u32);
        }
        for k in 0..2_500 {
            map.remove(&k);
        }
        let mut v: Vec<u64> = Vec::new();
        for i in 0..50_000 {
            v.push(i);
        }
        v.truncate(10);
        v.shrink_to_fit();
        let mut s = String::new();
        for i in 0..5_000 {
            s.push_str(&i.to_string());
        }
        let big = vec![round as u8; 300 << 10]; // a large block of its own
        let outgoing: Vec<Box<[u8]>> = (0..200)
            .map(|i| vec![i as u8; 1 + (next() % 600) as usize].into_boxed_slice())
            .collect();
        send.send(outgoing)
            .expect("the receiver outlives the senders");
        checksum += map.len() as u64
            + tree.len() as u64
            + v.iter().sum::<u64>()
            + s.len() as u64
            + big[7] as u64;
    }
    checksum
}

fn main() {
    // Warm up: the space and this thread's cache exist, the harness is idle.
    let warm = vec![1u8; 100];
    drop(warm);
    let (before_live, before_alloc, before_objects) = live();

    let (send, recv) = mpsc::channel::<Vec<Box<[u8]>>>();
    // Boxes from every worker are freed here, on another thread.
    let receiver = std::thread::spawn(move || {
        let mut received = 0usize;
        for batch in recv {
            received += batch.iter().map(|b| b.len()).sum::<usize>();
        }
        received
    });
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let send = send.clone();
            std::thread::spawn(move || workload(0x9E37_79B9 + t as u64, send))
        })
        .collect();
    drop(send);
    let checksum: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("worker panicked"))
        .sum();
    let received = receiver.join().expect("receiver panicked");
    assert!(checksum > 0 && received > 0);

    let (after_live, after_alloc, after_objects) = live();
    let allocated = after_alloc - before_alloc;
    let objects = after_objects - before_objects;
    println!(
        "global_alloc: {objects} allocations, {} MiB through the runtime-internal space; live bytes {before_live} -> {after_live}",
        allocated >> 20
    );
    // The workload went through the space...
    let floor = MIN_ALLOCS_PER_ROUND * (ROUNDS * THREADS) as u64;
    assert!(
        objects >= floor,
        "only {objects} allocations were accounted (at least {floor} were made)"
    );
    assert!(
        allocated > 100 << 20,
        "only {allocated} bytes were accounted"
    );
    // ...and gave everything back: what is live now is what was live before,
    // give or take the few bytes the runtime keeps for the joined threads.
    let drift = after_live.abs_diff(before_live);
    assert!(
        drift < 64 << 10,
        "MemStats does not balance: {drift} bytes live after the workload"
    );
    println!("global_alloc: 1 passed, 0 failed");
}
