//! The code allocator end to end: real machine code, W^X, reuse, lookup, limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};
use rtmem_code::{CodeAllocator, CodeBlob, CodeConfig};

fn allocator(config: CodeConfig) -> (Arc<PoolManager>, CodeAllocator) {
    let pools =
        Arc::new(PoolManager::new(PoolManagerConfig::default().with_reserve(1 << 30)).unwrap());
    let code = CodeAllocator::new(pools.clone(), config).unwrap();
    (pools, code)
}

/// A function returning `value`: `mov eax, imm32; ret` on x86_64,
/// `movz w0, #imm16; ret` on aarch64.
fn return_const(value: u16) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut code = vec![0xB8];
        code.extend_from_slice(&u32::from(value).to_le_bytes());
        code.push(0xC3);
        code
    }
    #[cfg(target_arch = "aarch64")]
    {
        let movz = 0x5280_0000u32 | (u32::from(value) << 5);
        let ret = 0xD65F_03C0u32;
        [movz.to_le_bytes(), ret.to_le_bytes()].concat()
    }
}

fn call(blob: &CodeBlob) -> i32 {
    // SAFETY: every blob called here was installed from `return_const`, a
    // complete function with the C ABI returning an i32.
    let f: extern "C" fn() -> i32 = unsafe { blob.entry() };
    f()
}

#[test]
fn runs_real_machine_code() {
    let (_pools, code) = allocator(CodeConfig::default());
    let blob = code.install(&return_const(42)).unwrap();
    assert_eq!(call(&blob), 42);
}

#[test]
fn freed_code_is_reused_for_new_code() {
    let (_pools, code) = allocator(CodeConfig::default());
    let first = code.install(&return_const(42)).unwrap();
    assert_eq!(call(&first), 42);
    code.free(first);
    let second = code.install(&return_const(7)).unwrap();
    assert_eq!(second.start(), first.start(), "the freed memory is reused");
    assert_eq!(call(&second), 7);
}

#[test]
fn many_functions_run_side_by_side() {
    let (_pools, code) = allocator(CodeConfig::default());
    let blobs: Vec<_> = (0..2000u16)
        .map(|i| code.install(&return_const(i)).unwrap())
        .collect();
    for (i, blob) in blobs.iter().enumerate() {
        assert_eq!(call(blob), i as i32);
    }
    // Install more code while the earlier functions keep working (dual mapping
    // never takes execute rights away).
    let more = code.install(&return_const(9999)).unwrap();
    assert_eq!(call(&blobs[0]), 0);
    assert_eq!(call(&more), 9999);
}

/// Every mapping of the process: (start, end, permissions).
fn mappings() -> Vec<(usize, usize, String)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let range = parts.next().unwrap();
            let perms = parts.next().unwrap().to_owned();
            let (a, b) = range.split_once('-').unwrap();
            (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
                perms,
            )
        })
        .collect()
}

#[test]
fn no_mapping_is_writable_and_executable() {
    let (_pools, code) = allocator(CodeConfig::default());
    let blob = code.install(&return_const(1)).unwrap();
    let maps = mappings();
    let exec = maps
        .iter()
        .find(|(a, b, _)| (*a..*b).contains(&blob.start_addr()))
        .unwrap();
    assert!(exec.2.starts_with("r-x"), "code view is {}", exec.2);
    for (a, b, perms) in &maps {
        assert!(
            !(perms.contains('w') && perms.contains('x')),
            "mapping {a:#x}-{b:#x} is {perms}: writable and executable"
        );
    }
}

#[test]
fn alignment_is_honoured_and_configurable() {
    for alignment in [16, 64, 4096] {
        let (_pools, code) = allocator(CodeConfig {
            alignment,
            ..CodeConfig::default()
        });
        for len in [1, 15, 17, 100] {
            let blob = code.install(&vec![0x90; len]).unwrap();
            assert_eq!(
                blob.start_addr() % alignment,
                0,
                "alignment {alignment}, len {len}"
            );
        }
    }
    let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
    let err = CodeAllocator::new(
        pools,
        CodeConfig {
            alignment: 24,
            ..CodeConfig::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, AllocError::BadLayout { align: 24, .. }),
        "{err}"
    );
}

#[test]
fn find_maps_every_pc_to_its_blob() {
    let (_pools, code) = allocator(CodeConfig::default());
    let blobs: Vec<_> = (1..200)
        .map(|n| code.install(&vec![0xC3; n]).unwrap())
        .collect();
    for blob in &blobs {
        assert_eq!(code.find(blob.start_addr()), Some(*blob));
        assert_eq!(code.find(blob.start_addr() + blob.len() - 1), Some(*blob));
    }
    // The padding after a 1-byte blob belongs to no blob.
    assert_eq!(code.find(blobs[0].start_addr() + 1), None);
    code.free(blobs[10]);
    assert_eq!(code.find(blobs[10].start_addr()), None);
    let mut walked = 0;
    code.walk(|b| {
        assert_ne!(b, blobs[10]);
        walked += 1;
    });
    assert_eq!(walked, blobs.len() - 1);
}

#[test]
fn code_space_limit_is_an_error_naming_the_space_and_is_recoverable() {
    let pools = Arc::new(
        PoolManager::new(PoolManagerConfig::default().with_limit(SpaceType::Code, 512 << 10))
            .unwrap(),
    );
    let code = CodeAllocator::new(pools.clone(), CodeConfig::default()).unwrap();
    let big = pools.pool_size() - 64;
    let a = code.install_with(big, |buf, _| buf.fill(0xC3)).unwrap();
    let b = code.install_with(big, |buf, _| buf.fill(0xC3)).unwrap();
    let err = code.install_with(big, |buf, _| buf.fill(0xC3)).unwrap_err();
    assert!(err.to_string().contains("code space is full"), "{err}");
    assert_eq!(err.space(), Some(SpaceType::Code));
    code.free(a);
    let c = code.install_with(big, |buf, _| buf.fill(0xC3)).unwrap();
    code.free(b);
    code.free(c);
    assert_eq!(pools.stats().space(SpaceType::Code).live_bytes(), 0);

    let pools = Arc::new(
        PoolManager::new(PoolManagerConfig::default().with_limit(SpaceType::Code, 0)).unwrap(),
    );
    let code = CodeAllocator::new(pools, CodeConfig::default()).unwrap();
    assert!(matches!(
        code.install(&[0xC3]),
        Err(AllocError::LimitExceeded {
            space: SpaceType::Code,
            ..
        })
    ));
}

#[test]
fn bad_requests() {
    let (_pools, code) = allocator(CodeConfig::default());
    assert!(matches!(
        code.install(&[]),
        Err(AllocError::BadLayout { size: 0, .. })
    ));
    let err = code
        .install_with(usize::MAX / 2, |_, _| unreachable!())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AllocError::OutOfMemory {
                space: SpaceType::Code,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "is not a live code blob")]
fn double_free_panics_with_the_address() {
    let (_pools, code) = allocator(CodeConfig::default());
    let blob = code.install(&[0xC3]).unwrap();
    code.free(blob);
    code.free(blob);
}

#[test]
fn blobs_larger_than_a_chunk_and_empty_chunks_go_back() {
    let (pools, code) = allocator(CodeConfig::default());
    let small = code.install(&[0xC3]).unwrap();
    let huge = code
        .install_with(3 * pools.pool_size() + 5, |buf, exec| {
            assert_eq!(exec % 16, 0);
            buf.fill(0xC3);
        })
        .unwrap();
    assert_eq!(code.chunk_count(), 2);
    assert_eq!(pools.used(SpaceType::Code), 5 * pools.pool_size());
    code.free(huge);
    assert_eq!(
        code.chunk_count(),
        1,
        "the empty chunk went back to the pool manager"
    );
    assert_eq!(pools.used(SpaceType::Code), pools.pool_size());
    code.free(small);
    drop(code);
    assert_eq!(pools.used(SpaceType::Code), 0);
    // The pool is an ordinary read-write pool again.
    let pool = pools.alloc_pool(SpaceType::Object, 1).unwrap();
    // SAFETY: a fresh pool is committed read-write.
    unsafe { pool.start().as_ptr().write_bytes(1, pool.size()) };
}

#[test]
fn installs_from_many_threads() {
    let (_pools, code) = allocator(CodeConfig::default());
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let code = &code;
            s.spawn(move || {
                for i in 0..200u16 {
                    let blob = code.install(&return_const(t * 1000 + i)).unwrap();
                    assert_eq!(call(&blob), i32::from(t * 1000 + i));
                    if i % 2 == 0 {
                        code.free(blob);
                    }
                }
            });
        }
    });
    assert_eq!(code.live_blobs(), 400);
}

#[derive(Clone, Debug)]
enum Op {
    Install(usize, u8),
    Free(usize),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn installs_and_frees_match_a_model(ops in proptest::collection::vec(
        prop_oneof![
            3 => (1..3000usize, any::<u8>()).prop_map(|(n, b)| Op::Install(n, b)),
            2 => any::<usize>().prop_map(Op::Free),
        ], 1..150))
    {
        let (pools, code) = allocator(CodeConfig { alignment: 32, chunk_bytes: 0 });
        let mut live: BTreeMap<usize, (CodeBlob, u8)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Install(len, byte) => {
                    let blob = code.install(&vec![byte; len]).unwrap();
                    prop_assert_eq!(blob.start_addr() % 32, 0);
                    if let Some((_, (prev, _))) = live.range(..blob.start_addr()).next_back() {
                        prop_assert!(prev.start_addr() + prev.len() <= blob.start_addr());
                    }
                    if let Some((_, (next, _))) = live.range(blob.start_addr()..).next() {
                        prop_assert!(blob.start_addr() + blob.len() <= next.start_addr());
                    }
                    live.insert(blob.start_addr(), (blob, byte));
                }
                Op::Free(pick) => {
                    if live.is_empty() { continue; }
                    let key = *live.keys().nth(pick % live.len()).unwrap();
                    let (blob, _) = live.remove(&key).unwrap();
                    code.free(blob);
                }
            }
        }
        for (blob, byte) in live.values() {
            prop_assert!(blob.bytes().iter().all(|b| b == byte), "blob contents changed");
            prop_assert_eq!(code.find(blob.start_addr() + blob.len() / 2), Some(*blob));
        }
        let stats = pools.stats().space(SpaceType::Code);
        prop_assert_eq!(stats.live_objects(), live.len() as u64);
        prop_assert_eq!(
            stats.live_bytes(),
            live.values().map(|(b, _)| rtmem_base::align_up(b.len(), 32) as u64).sum::<u64>()
        );
    }
}
