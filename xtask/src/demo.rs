//! `cargo xtask demo`: the main job. A memory manager built from the
//! selected profile runs the binary-trees workload on its collected heap,
//! then a pretend runtime exercises every other space (its own data, a
//! compiler pass in an arena, machine code, interpreter frames); the demo
//! prints what the memory manager did: per-space statistics and the
//! collector's summary.

use std::alloc::Layout;
use std::time::Instant;

use allocator_api2::vec::Vec as ArenaVec;
use rtmem::MemoryManager;
use rtmem_arena::Arena;
use rtmem_base::{AllocError, format_bytes};
use rtmem_spaces::Spaces;
use rtmem_testvm::TestVm;
use rtmem_testvm::trees::{PairTrees, binary_trees, expected_total};

/// The depth of the binary-trees run.
const DEPTH: u32 = 16;

/// Runs the demo. Accepts no arguments.
pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("demo takes no arguments (got `{arg}`)"));
    }
    let mm = MemoryManager::from_env(TestVm::default()).map_err(|e| e.to_string())?;
    let profile = mm.profile();
    println!(
        "rtmem demo: profile `{}` ({}), collector `{}` with {} GC worker(s), every space over one pool manager ({} pools)\n",
        profile.name,
        profile.source,
        profile.gc,
        profile.gc_workers,
        format_bytes(mm.spaces().pools().pool_size() as u64)
    );
    object_heap(&mm)?;
    let spaces = mm.spaces();
    runtime_internal(spaces).map_err(|e| e.to_string())?;
    compiler_pass(spaces).map_err(|e| e.to_string())?;
    machine_code(spaces).map_err(|e| e.to_string())?;
    interpreter_frames(spaces)?;
    println!("\nwhat the memory manager did:\n{}", mm.report());
    Ok(())
}

/// The binary-trees program of the Benchmarks Game on the collected heap.
fn object_heap(mm: &MemoryManager<TestVm>) -> Result<(), String> {
    println!("object heap: binary trees of depth {DEPTH} (trees of 24-byte pairs)");
    let start = Instant::now();
    let mut trees = PairTrees::new(mm.register(Default::default()));
    let total = binary_trees(&mut trees, DEPTH, |line| println!("  {line}"));
    let wall = start.elapsed();
    if total != expected_total(DEPTH) {
        return Err(format!(
            "binary trees: wrong answer {total}, expected {}",
            expected_total(DEPTH)
        ));
    }
    let gc = mm.heap().summary();
    println!(
        "  {total} nodes in {:.0} ms; {} collections, pauses max {:.2} ms, p50 {:.2} ms, total {:.1} ms; heap peak {}\n",
        wall.as_secs_f64() * 1e3,
        gc.gc_count,
        gc.pause_max_ms,
        gc.pause_p50_ms,
        gc.pause_total_ms,
        format_bytes(mm.heap().peak_bytes() as u64)
    );
    Ok(())
}

/// The runtime's own data through a thread cache of the runtime-internal space.
fn runtime_internal(spaces: &Spaces) -> Result<(), AllocError> {
    let mut cache = spaces.internal().cache();
    let layouts: Vec<Layout> = (0..30_000)
        .map(|i| {
            let size = if i % 100 == 0 {
                100_000
            } else {
                [24, 100, 700, 3000][i % 4]
            };
            Layout::from_size_align(size, 8).expect("valid")
        })
        .collect();
    let blocks: Vec<_> = layouts
        .iter()
        .map(|&l| cache.alloc(l))
        .collect::<Result<_, _>>()?;
    for (p, &l) in blocks.iter().zip(&layouts).step_by(2) {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { cache.free(*p, l) };
    }
    println!(
        "runtime-internal space: {} blocks (small, medium, large routed by size), half of them freed",
        blocks.len()
    );
    for (p, &l) in blocks.iter().zip(&layouts).skip(1).step_by(2) {
        // SAFETY: the other half, freed once.
        unsafe { cache.free(*p, l) };
    }
    Ok(())
}

/// A pretend compiler pass: per function, an IR vector and scratch strings in
/// an arena, released back to a mark.
fn compiler_pass(spaces: &Spaces) -> Result<(), AllocError> {
    let mut arena: Arena = spaces.compiler_arena();
    let functions = 500;
    let mut peak = 0;
    for f in 0..functions {
        let mark = arena.mark();
        {
            let mut ir: ArenaVec<u64, &Arena> = ArenaVec::new_in(&arena);
            for op in 0..(200 + f % 300) {
                ir.push(op as u64 * 31 + f as u64);
            }
            let _name = arena.alloc_str(&format!("function_{f}"))?;
            let _block = arena.alloc(Layout::from_size_align(512, 16).expect("valid layout"))?;
            peak = peak.max(arena.allocated_bytes());
        }
        arena.release(mark);
    }
    println!(
        "compiler-internal space: {functions} functions compiled in one arena, peak {} in {} arena(s), released per function",
        format_bytes(peak as u64),
        arena.arena_count()
    );
    Ok(())
}

/// A JIT installs a function, runs it, and frees it.
fn machine_code(spaces: &Spaces) -> Result<(), AllocError> {
    #[cfg(target_arch = "x86_64")]
    let code: &[u8] = &[0xB8, 42, 0, 0, 0, 0xC3]; // mov eax, 42; ret
    #[cfg(target_arch = "aarch64")]
    let code: &[u8] = &[0x40, 0x05, 0x80, 0x52, 0xC0, 0x03, 0x5F, 0xD6]; // mov w0, #42; ret
    let blob = spaces.code().install(code)?;
    // SAFETY: the bytes are a complete function with the C ABI returning an i32.
    let f: extern "C" fn() -> i32 = unsafe { blob.entry() };
    println!(
        "code space: installed {} bytes at {:#x} (W^X, dual-mapped), called it: {}",
        blob.len(),
        blob.start_addr(),
        f()
    );
    spaces.code().free(blob);
    Ok(())
}

/// An interpreter recursing until its frame stack overflows: the frame
/// allocator returns an error instead of crashing.
fn interpreter_frames(spaces: &Spaces) -> Result<(), String> {
    let mut frames = spaces.frames(256 << 10).map_err(|e| e.to_string())?;
    let mut pushed = Vec::new();
    let overflow = loop {
        match frames.push(128) {
            Ok(frame) => pushed.push(frame),
            Err(e) => break e,
        }
    };
    println!(
        "frames: {} frames of 128 bytes pushed, then: {overflow}",
        pushed.len()
    );
    while let Some(frame) = pushed.pop() {
        frames.pop(frame);
    }
    Ok(())
}
