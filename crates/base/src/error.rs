//! The error every rtmem allocator returns.

use std::fmt;

use crate::SpaceType;
use crate::stats::format_bytes;

/// Why an allocation failed. Every failure of every rtmem allocator is one of
/// these values: nothing panics on exhaustion and nothing returns a null pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// The address space reserved for the pools is exhausted, or the operating
    /// system refused to back the memory.
    OutOfMemory {
        /// The space the request was made for.
        space: SpaceType,
        /// The bytes requested.
        requested: usize,
        /// The bytes the pool manager reserved for all spaces together.
        reserved: usize,
    },
    /// The space's byte limit would be exceeded.
    LimitExceeded {
        /// The space whose limit was hit.
        space: SpaceType,
        /// The bytes requested.
        requested: usize,
        /// The bytes the space already holds.
        used: usize,
        /// The space's limit in bytes.
        limit: usize,
    },
    /// The layout cannot be served by this allocator.
    BadLayout {
        /// The requested size in bytes.
        size: usize,
        /// The requested alignment in bytes.
        align: usize,
        /// Why it cannot be served.
        reason: &'static str,
    },
    /// A LIFO frame allocator ran out of room: the interpreter's stack overflowed.
    StackOverflow {
        /// The size of the frame that did not fit.
        requested: usize,
        /// The bytes of frames already pushed.
        used: usize,
        /// The configured stack limit in bytes.
        limit: usize,
    },
    /// A virtual-memory system call failed.
    Os {
        /// The operation (`mmap`, `mprotect`, ...).
        operation: &'static str,
        /// The length of the range it was applied to.
        bytes: usize,
        /// The raw `errno`.
        errno: i32,
    },
}

impl AllocError {
    /// The space the failure happened in, where one is known.
    pub fn space(&self) -> Option<SpaceType> {
        match self {
            AllocError::OutOfMemory { space, .. } | AllocError::LimitExceeded { space, .. } => {
                Some(*space)
            }
            AllocError::StackOverflow { .. } => Some(SpaceType::Frames),
            AllocError::BadLayout { .. } | AllocError::Os { .. } => None,
        }
    }

    /// Whether a space ran out of room (its limit or the reservation): the
    /// failures a collection may cure.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            AllocError::OutOfMemory { .. } | AllocError::LimitExceeded { .. }
        )
    }

    /// Builds a [`AllocError::BadLayout`].
    pub const fn bad_layout(size: usize, align: usize, reason: &'static str) -> AllocError {
        AllocError::BadLayout {
            size,
            align,
            reason,
        }
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::OutOfMemory {
                space,
                requested,
                reserved,
            } => write!(
                f,
                "out of memory in the {space} space: {} requested, all {} of reserved address space in use",
                format_bytes(requested as u64),
                format_bytes(reserved as u64),
            ),
            AllocError::LimitExceeded {
                space,
                requested,
                used,
                limit,
            } => write!(
                f,
                "the {space} space is full: {} requested, {} in use, limit {}",
                format_bytes(requested as u64),
                format_bytes(used as u64),
                format_bytes(limit as u64),
            ),
            AllocError::BadLayout {
                size,
                align,
                reason,
            } => {
                write!(f, "bad layout (size {size}, align {align}): {reason}")
            }
            AllocError::StackOverflow {
                requested,
                used,
                limit,
            } => write!(
                f,
                "stack overflow: a frame of {requested} bytes does not fit ({used} of {limit} bytes in use)"
            ),
            AllocError::Os {
                operation,
                bytes,
                errno,
            } => write!(
                f,
                "{operation} of {} failed: {}",
                format_bytes(bytes as u64),
                std::io::Error::from_raw_os_error(errno)
            ),
        }
    }
}

impl std::error::Error for AllocError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_space_and_sizes() {
        let e = AllocError::LimitExceeded {
            space: SpaceType::Code,
            requested: 4096,
            used: 1 << 20,
            limit: 1 << 20,
        };
        let msg = e.to_string();
        assert!(msg.contains("code space") && msg.contains("4.0 KiB") && msg.contains("1.0 MiB"));
        assert_eq!(e.space(), Some(SpaceType::Code));
        let e = AllocError::StackOverflow {
            requested: 64,
            used: 1000,
            limit: 1024,
        };
        assert!(e.to_string().starts_with("stack overflow"));
        assert_eq!(e.space(), Some(SpaceType::Frames));
        let e = AllocError::Os {
            operation: "mmap",
            bytes: 1 << 30,
            errno: 12,
        };
        assert!(e.to_string().contains("mmap of 1.0 GiB failed"), "{e}");
    }
}
