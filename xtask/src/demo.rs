//! `cargo xtask demo`: a workload over every space of a runtime, configured
//! by the selected profile, then the per-space statistics table.

use std::alloc::Layout;

use allocator_api2::vec::Vec as ArenaVec;
use rtmem::Profile;
use rtmem_arena::Arena;
use rtmem_base::{AllocError, format_bytes};
use rtmem_spaces::Spaces;
use rtmem_tlab::Tlab;

/// Runs the demo. Accepts no arguments yet.
pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("demo takes no arguments (got `{arg}`)"));
    }
    let profile = Profile::from_env().map_err(|e| e.to_string())?;
    let spaces = Spaces::new(profile.spaces_config()).map_err(|e| e.to_string())?;
    println!(
        "rtmem demo: profile `{}` ({}), every space over one pool manager ({} pools)",
        profile.name,
        profile.source,
        format_bytes(spaces.pools().pool_size() as u64)
    );
    println!(
        "the profile's collector is `{}`; collectors are not built yet, so this demo exercises the spaces and their allocators\n",
        profile.gc
    );
    young_objects(&spaces).map_err(|e| e.to_string())?;
    tenured_objects(&spaces).map_err(|e| e.to_string())?;
    runtime_internal(&spaces).map_err(|e| e.to_string())?;
    compiler_pass(&spaces).map_err(|e| e.to_string())?;
    machine_code(&spaces).map_err(|e| e.to_string())?;
    interpreter_frames(&spaces)?;
    println!("\nper-space statistics:\n{}", spaces.snapshot());
    Ok(())
}

/// Two mutator threads allocate small objects through TLABs carved from one
/// young region of the object space; then everything dies young at once.
fn young_objects(spaces: &Spaces) -> Result<(), AllocError> {
    let mut region = spaces.object().young_region(64 << 20)?;
    let (threads, per_thread) = (2, 200_000);
    let stats = std::thread::scope(|s| {
        let region = &region;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<_, AllocError> {
                    let mut tlab = Tlab::new(32 << 10);
                    for i in 0..per_thread {
                        let p = tlab.alloc(region, 16 + 8 * ((i + t) % 12))?;
                        // SAFETY: a fresh, 8-aligned allocation of at least 16 bytes.
                        unsafe { p.cast::<usize>().as_ptr().write(i) };
                    }
                    tlab.retire(region);
                    Ok(tlab.stats())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("mutator thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    println!("object space, young: {threads} threads x {per_thread} objects through TLABs");
    for (t, s) in stats.iter().enumerate() {
        println!(
            "  thread {t}: {} objects, {}, {} TLAB refills, {} wasted in retired tails",
            s.objects,
            format_bytes(s.allocated_bytes as u64),
            s.refills,
            format_bytes(s.wasted_bytes as u64)
        );
    }
    println!(
        "  region used {}; reset frees it all at once",
        format_bytes(region.used() as u64)
    );
    region.reset();
    Ok(())
}

/// Tenured objects: small ones in runs of slots, medium ones in the free list,
/// a large one in a pool of its own; then a sweep frees every other one.
fn tenured_objects(spaces: &Spaces) -> Result<(), AllocError> {
    let tenured = spaces.object().tenured();
    let mut local = tenured.small().local();
    let small: Vec<_> = (0..50_000)
        .map(|i| local.alloc(16 + i % 240))
        .collect::<Result<_, _>>()?;
    let medium: Vec<_> = (0..2_000)
        .map(|i| {
            tenured
                .medium()
                .alloc(Layout::from_size_align(512 + 8 * (i % 500), 16).expect("valid"))
        })
        .collect::<Result<_, _>>()?;
    let big = spaces
        .humongous()
        .large()
        .alloc(Layout::from_size_align(4 << 20, 4096).expect("valid"))?;
    drop(local);
    // A pretend collection: every other object is dead.
    let live = |p: std::ptr::NonNull<u8>| (p.as_ptr() as usize / 16).is_multiple_of(2);
    let swept_small = tenured.small().sweep(|p, _| live(p));
    let swept_medium = tenured.medium().sweep(|p, _| live(p));
    println!(
        "object space, tenured: {} small + {} medium objects; a sweep freed {} of them ({}); one {} humongous object",
        small.len(),
        medium.len(),
        swept_small.objects + swept_medium.objects,
        format_bytes((swept_small.bytes + swept_medium.bytes) as u64),
        format_bytes(4 << 20)
    );
    // SAFETY: allocated above and freed once.
    unsafe { spaces.humongous().large().free(big) };
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
