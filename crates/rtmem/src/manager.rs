//! `MemoryManager`: the one object a runtime creates — the spaces and the
//! collected object heap of a [`Profile`].

use std::fmt;
use std::sync::Arc;

use rtmem_base::{AllocError, MemStatsSnapshot};
use rtmem_gc::stats::GcSummary;
use rtmem_gc::{Heap, HeapFootprint, Mutator, VM};
use rtmem_spaces::Spaces;
use serde::Serialize;

use crate::profile::{Profile, ProfileError};

/// Why a [`MemoryManager`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagerError {
    /// The profile could not be loaded.
    Profile(ProfileError),
    /// The spaces or the heap could not be set up.
    Memory(AllocError),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::Profile(e) => e.fmt(f),
            ManagerError::Memory(e) => write!(f, "cannot set up the memory manager: {e}"),
        }
    }
}

impl std::error::Error for ManagerError {}

impl From<ProfileError> for ManagerError {
    fn from(e: ProfileError) -> Self {
        ManagerError::Profile(e)
    }
}

impl From<AllocError> for ManagerError {
    fn from(e: AllocError) -> Self {
        ManagerError::Memory(e)
    }
}

/// A runtime's memory manager: every space of its profile over one pool
/// manager, and the object heap with the profile's collector, for the
/// runtime's binding `V`.
///
/// ```
/// use rtmem::{MemoryManager, Profile};
/// use rtmem_testvm::{TestMutator, TestVm};
///
/// let mm = MemoryManager::new(Profile::from_name("balanced").unwrap(), TestVm::default()).unwrap();
/// let mut m = mm.register(Default::default());
/// let p = m.pair(None, None).unwrap();
/// assert_eq!(m.left(p), None);
/// let report = mm.report();
/// assert_eq!(report.gc.collector, rtmem::GcKind::GenConcurrent);
/// assert!(report.to_string().contains("object"));
/// ```
pub struct MemoryManager<V: VM> {
    profile: Profile,
    spaces: Arc<Spaces>,
    heap: Heap<V>,
}

impl<V: VM> MemoryManager<V> {
    /// Builds the spaces and the heap `profile` describes.
    pub fn new(profile: Profile, vm: V) -> Result<MemoryManager<V>, ManagerError> {
        let spaces = Arc::new(Spaces::new(profile.spaces_config())?);
        let heap = Heap::new(spaces.clone(), profile.gc_config(), vm)?;
        tracing::info!(profile = %profile.name, gc = %profile.gc, "memory manager created");
        Ok(MemoryManager {
            profile,
            spaces,
            heap,
        })
    }

    /// The memory manager of the profile `RTMEM_PROFILE` names (a built-in
    /// name or a path), or of the default profile when it is unset.
    pub fn from_env(vm: V) -> Result<MemoryManager<V>, ManagerError> {
        MemoryManager::new(Profile::from_env()?, vm)
    }

    /// The profile it was built from.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Every space: code, compiler-internal arenas, runtime-internal,
    /// frames, and the object spaces the heap allocates in.
    pub fn spaces(&self) -> &Arc<Spaces> {
        &self.spaces
    }

    /// The collected object heap.
    pub fn heap(&self) -> &Heap<V> {
        &self.heap
    }

    /// Registers the calling thread as a mutator of the heap.
    pub fn register(&self, roots: V::MutatorRoots) -> Mutator<V> {
        self.heap.register(roots)
    }

    /// Per-space statistics now.
    pub fn snapshot(&self) -> MemStatsSnapshot {
        self.spaces.snapshot()
    }

    /// Everything at once: per-space statistics, the collector's summary
    /// and the heap's fixed costs. `Display` prints tables; `to_json` one
    /// JSON object.
    pub fn report(&self) -> Report {
        Report {
            profile: self.profile.name.clone(),
            memory: self.snapshot(),
            gc: self.heap.summary(),
            footprint: self.heap.footprint(),
            heap_peak_bytes: self.heap.peak_bytes(),
        }
    }
}

/// What a [`MemoryManager`] did, from [`MemoryManager::report`].
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The profile's name.
    pub profile: String,
    /// Per-space statistics.
    pub memory: MemStatsSnapshot,
    /// The collector's totals.
    pub gc: GcSummary,
    /// The heap's fixed costs.
    pub footprint: HeapFootprint,
    /// The most object bytes in use at once.
    pub heap_peak_bytes: usize,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and names always serializes")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "profile: {}", self.profile)?;
        writeln!(f, "{}", self.memory)?;
        writeln!(f, "{}", self.gc)?;
        write!(
            f,
            "heap peak: {} in use; mark bitmap {:.4} B per heap byte",
            rtmem_base::format_bytes(self.heap_peak_bytes as u64),
            self.footprint.mark_bitmap_bytes_per_heap_byte
        )
    }
}
