//! rtmem's facade: profiles that pick a whole memory-management configuration.
//!
//! ```
//! use rtmem::{GcKind, Profile};
//!
//! let p = Profile::from_name("small-footprint").unwrap();
//! assert_eq!(p.gc, GcKind::Stw);
//! let err = Profile::from_name("tiny").unwrap_err();
//! assert!(err.to_string().contains("known profiles: balanced"));
//! ```

mod profile;

pub use profile::{
    DEFAULT_PROFILE, HeapConfig, PROFILE_ENV, Profile, ProfileError, format_size, parse_size,
};
pub use rtmem_gc::stats::GcKind;
pub use rtmem_gc::trigger::{TriggerConfig, TriggerKind};
