//! The spaces of a language runtime's memory, over one pool manager.
//!
//! | space | what lives there | allocators |
//! |---|---|---|
//! | code | machine code from a JIT or a loader | [`CodeAllocator`](rtmem_code::CodeAllocator) (W^X) |
//! | compiler-internal | a compiler's scratch data, freed per compilation | [`Arena`](rtmem_arena::Arena) |
//! | runtime-internal | the runtime's own structures (its `malloc`) | [`RuntimeInternalSpace`]: run-of-slots, free list, own pools by size |
//! | object | managed objects: young bump regions, tenured slots and blocks | [`ObjectSpace`] |
//! | non-moving | managed objects that never move | [`NonMovingSpace`] |
//! | humongous | managed objects too large for the rest | [`HumongousSpace`] |
//! | frames | interpreter frames | [`FrameAllocator`](rtmem_arena::FrameAllocator) |
//!
//! Each space has an initial size, a growth rule and a limit
//! ([`SpaceBudget`](rtmem_base::SpaceBudget)), enforced by the pool manager;
//! a request past the limit is an [`AllocError`](rtmem_base::AllocError)
//! that names the space. [`InternalGlobalAlloc`] installs the runtime-internal
//! space as the program's `#[global_allocator]`.
//!
//! ```
//! use std::alloc::Layout;
//! use rtmem_base::{SpaceBudget, SpaceType};
//! use rtmem_spaces::{Spaces, SpacesConfig};
//!
//! let spaces = Spaces::new(
//!     SpacesConfig::default().with_budget(SpaceType::RuntimeInternal, SpaceBudget::growing(1 << 20, 8 << 20, 50)),
//! ).unwrap();
//! let layout = Layout::from_size_align(48, 8).unwrap();
//! let p = spaces.internal().alloc(layout).unwrap();
//! // SAFETY: allocated just above with this layout.
//! unsafe { spaces.internal().free(p, layout) };
//! let snapshot = spaces.snapshot();
//! assert_eq!(snapshot.space(SpaceType::RuntimeInternal).live_bytes(), 0);
//! assert!(snapshot.space(SpaceType::RuntimeInternal).bytes_allocated >= 48);
//! ```

mod config;
mod global;
mod internal;
mod object;
mod spaces;

pub use config::SpacesConfig;
pub use global::InternalGlobalAlloc;
pub use internal::{InternalCache, RuntimeInternalSpace};
pub use object::{HumongousSpace, NonMovingSpace, ObjectSpace, SlotsAndBlocks};
pub use spaces::Spaces;
