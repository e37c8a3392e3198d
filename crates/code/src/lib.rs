//! Executable memory for JIT compilers and code loaders, with W^X.
//!
//! [`CodeAllocator`] installs machine code into the code space of a
//! [`PoolManager`](rtmem_base::PoolManager): every blob is aligned (16 bytes
//! by default, configurable), instruction caches are maintained where the
//! architecture needs it (aarch64; nothing to do on x86_64), freed code is
//! poisoned with trapping instructions and its memory reused, and
//! [`CodeAllocator::find`] answers "which blob contains this pc" in O(log n)
//! for stack walkers and profilers.
//!
//! **W^X by dual mapping.** Each chunk is a `memfd` mapped twice: read+execute
//! at the chunk's address in the code space, read+write at another address.
//! Code is written through the second view and run from the first, so no
//! mapping is ever both writable and executable, and installing code never
//! revokes execute rights from other code in the same page (which flipping
//! page protections back and forth would, crashing threads running it).
//!
//! ```
//! use std::sync::Arc;
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_code::{CodeAllocator, CodeConfig};
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//! let code = CodeAllocator::new(pools.clone(), CodeConfig { alignment: 32, ..CodeConfig::default() }).unwrap();
//! let blob = code.install(&[0x90; 10]).unwrap(); // any bytes; run them only if they are code
//! assert_eq!(blob.start_addr() % 32, 0);
//! assert_eq!(pools.space_of(blob.start_addr()), Some(SpaceType::Code));
//! code.free(blob);
//! assert_eq!(code.find(blob.start_addr()), None);
//! ```

mod allocator;
mod chunk;
mod icache;

pub use allocator::{CodeAllocator, CodeBlob, CodeConfig};
