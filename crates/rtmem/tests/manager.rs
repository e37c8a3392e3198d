//! The memory manager: built from profiles, refusing collectors that are not
//! built, and every space enforcing its limit with an error that names it,
//! usable again after frees.

use std::alloc::Layout;

use rtmem::{GcCause, GcKind, MemoryManager, Profile};
use rtmem_base::{AllocError, SpaceType};
use rtmem_testvm::{TestMutator, TestVm};

/// The small-footprint profile with every space limited to a few MiB.
fn tight() -> MemoryManager<TestVm> {
    let mut text = String::from("inherits = \"small-footprint\"\n");
    for space in [
        "code",
        "compiler-internal",
        "runtime-internal",
        "object",
        "non-moving",
        "humongous",
    ] {
        text.push_str(&format!(
            "\n[spaces.{space}]\ninitial = \"1MiB\"\nmax = \"4MiB\"\ngrowth_percent = 100\n"
        ));
    }
    let profile = Profile::parse("tight.toml", "tight", &text).unwrap();
    assert!(
        SpaceType::ALL[..6]
            .iter()
            .all(|&s| profile.space(s).max == 4 << 20)
    );
    MemoryManager::new(profile, TestVm::default()).unwrap()
}

fn assert_limit(err: AllocError, space: SpaceType) {
    assert!(
        matches!(err, AllocError::LimitExceeded { space: s, .. } if s == space),
        "{err}"
    );
    assert!(err.to_string().contains(space.name()), "{err}");
}

#[test]
fn every_builtin_profile_builds_a_working_manager() {
    for (name, _) in Profile::builtin() {
        let mm = MemoryManager::new(Profile::from_name(name).unwrap(), TestVm::default()).unwrap();
        let mut m = mm.register(Default::default());
        let kept = m.blob(name.as_bytes()).unwrap();
        m.push_root(Some(kept));
        for _ in 0..1000 {
            m.pair(None, None).unwrap();
        }
        let collected = m.collect(GcCause::Explicit);
        assert_eq!(collected, name != "epsilon", "{name}");
        // A generational profile moved the blob: its root knows where.
        let kept = m.root(0).unwrap();
        assert_eq!(m.bytes(kept), name.as_bytes());
        let report = mm.report();
        // A full collection of `gen` is recorded with the young collection
        // that empties eden after it.
        let expected = match mm.profile().gc {
            GcKind::Epsilon => 0,
            GcKind::Stw => 1,
            _ => 2,
        };
        assert_eq!(report.gc.gc_count, expected, "{name}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["profile"], name);
        assert_eq!(json["footprint"]["header_bytes_per_object"], 8);
        assert!(report.memory.space(SpaceType::Object).metadata > 0 || !collected);
        assert_eq!(report.memory.object_header_bytes, 8);
        // Allocator tables and the mark bitmap's share, over committed bytes.
        let object = report.memory.space(SpaceType::Object);
        let per_byte = report.memory.heap_metadata_per_byte();
        assert!(per_byte > 0.0 && per_byte.is_finite(), "{per_byte}");
        assert!(per_byte >= object.metadata as f64 / (4 * object.committed) as f64);
    }
}

#[test]
fn every_space_stops_at_its_limit_and_is_usable_after_frees() {
    let mm = tight();
    let spaces = mm.spaces();

    // Code.
    let mut blobs = Vec::new();
    let err = loop {
        match spaces.code().install(&[0xC3; 60_000]) {
            Ok(b) => blobs.push(b),
            Err(e) => break e,
        }
    };
    assert_limit(err, SpaceType::Code);
    blobs.drain(..).for_each(|b| spaces.code().free(b));
    spaces.code().install(&[0xC3; 60_000]).unwrap();

    // Compiler-internal: an arena freed when dropped.
    let layout = Layout::from_size_align(64 << 10, 8).unwrap();
    {
        let arena = spaces.compiler_arena();
        let err = loop {
            if let Err(e) = arena.alloc(layout) {
                break e;
            }
        };
        assert_limit(err, SpaceType::CompilerInternal);
    }
    spaces.compiler_arena().alloc(layout).unwrap();

    // Runtime-internal.
    let mut blocks = Vec::new();
    let err = loop {
        match spaces.internal().alloc(layout) {
            Ok(p) => blocks.push(p),
            Err(e) => break e,
        }
    };
    assert_limit(err, SpaceType::RuntimeInternal);
    for p in blocks.drain(..) {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { spaces.internal().free(p, layout) };
    }
    blocks.push(spaces.internal().alloc(layout).unwrap());

    // Object, non-moving and humongous: kept alive by a root, then dropped.
    let mut m = mm.register(Default::default());
    type Alloc = fn(&mut rtmem::Mutator<TestVm>) -> Result<rtmem::ObjectRef, AllocError>;
    let cases: [(SpaceType, Alloc); 3] = [
        (SpaceType::Object, |m| m.alloc(rtmem_testvm::PAIR, 24)),
        (SpaceType::NonMoving, |m| {
            m.alloc_pinned(rtmem_testvm::PAIR, 24)
        }),
        (SpaceType::Humongous, |m| {
            m.alloc_large(rtmem_testvm::PAIR, 24)
        }),
    ];
    for (space, alloc) in cases {
        let list = m.push_root(None);
        let err = loop {
            match alloc(&mut m) {
                Ok(p) => {
                    let next = m.root(list);
                    m.set_left(p, next);
                    m.set_root(list, Some(p));
                }
                Err(e) => break e,
            }
        };
        assert_limit(err, space);
        m.truncate_roots(list);
        alloc(&mut m).unwrap();
    }
    assert!(mm.heap().stats().gc_count() >= 3);
}
