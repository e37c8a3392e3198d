//! Arenas for memory that dies together, and a LIFO stack for interpreter
//! frames, over rtmem pools.
//!
//! - [`Arena`]: a single-threaded arena for scratch data freed wholesale: a
//!   compiler's IR and analyses for one method, a parser's nodes, a phase's
//!   temporaries. Allocation is a compare and an add, inlined; freeing is
//!   [`Arena::reset`] (everything), [`Arena::release`] back to an
//!   [`ArenaMark`] (everything allocated since, in stack order), or dropping
//!   the arena, each O(number of pools). `&Arena` is an
//!   [`allocator_api2`] [`Allocator`](allocator_api2::alloc::Allocator), so
//!   `Vec`, `Box` and `hashbrown::HashMap` can live in an arena. Its pools
//!   come from the [`PoolManager`](rtmem_base::PoolManager) of the
//!   [`CompilerInternal`](rtmem_base::SpaceType::CompilerInternal) space by
//!   default, chained through a header in each, so the arena never calls the
//!   global allocator.
//! - [`FrameAllocator`]: an interpreter's frame stack: [`push`](FrameAllocator::push)
//!   and [`pop`](FrameAllocator::pop) in LIFO order in one pool of the
//!   [`Frames`](rtmem_base::SpaceType::Frames) space, with a limit that ends
//!   deep recursion in [`AllocError::StackOverflow`](rtmem_base::AllocError::StackOverflow)
//!   rather than a crash.
//!
//! Use an arena when many objects share one lifetime and no destructor has to
//! run (destructors never run: see [`Arena::alloc_value`]); use a
//! free-list or run-slots allocator when objects die one by one. Both types
//! report what they hold to the pool manager's
//! [`MemStats`](rtmem_base::MemStats) in batches, keeping atomics (and, for
//! the arena, any per-allocation counter) off the fast paths.
//!
//! ```
//! use std::sync::Arc;
//! use allocator_api2::vec::Vec;
//! use rtmem_arena::Arena;
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//! let mut arena = Arena::new(pools.clone());
//!
//! // A collection in the arena: the last allocation grows in place.
//! let mut blocks: Vec<u32, &Arena> = Vec::new_in(&arena);
//! blocks.extend(0..1000);
//! let name = arena.alloc_str("main").unwrap();
//! assert_eq!((blocks.len(), &*name), (1000, "main"));
//! drop(blocks);
//!
//! // Scratch work for one phase, rolled back with a mark.
//! let before = arena.allocated_bytes();
//! let phase = arena.mark();
//! for i in 0..100u64 {
//!     arena.alloc_value([i; 4]).unwrap();
//! }
//! assert_eq!(arena.allocated_bytes(), before + 100 * 32);
//! arena.release(phase);
//! assert_eq!(arena.allocated_bytes(), before);
//!
//! // Dropping the arena gives every pool back.
//! drop(arena);
//! assert_eq!(pools.used(SpaceType::CompilerInternal), 0);
//! ```

mod allocator;
mod arena;
mod chunk;
mod frame;
mod mark;

pub use allocator_api2;
pub use arena::Arena;
pub use frame::{Frame, FrameAllocator};
pub use mark::ArenaMark;
