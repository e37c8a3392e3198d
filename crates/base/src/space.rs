//! The kinds of memory a runtime manages, each accounted and limited separately.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A space: the owner of a class of memory, with its own limit and statistics.
///
/// Every pool handed out by the [`PoolManager`](crate::PoolManager) is tagged
/// with the space it belongs to, so "which space owns this address" is a table
/// lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum SpaceType {
    /// Executable machine code produced by a JIT or an AOT loader.
    Code,
    /// Scratch memory of the compiler (arenas freed when a compilation ends).
    CompilerInternal,
    /// The runtime's own data structures (its `malloc`).
    RuntimeInternal,
    /// Managed objects that the collector may move (young and tenured generations).
    Object,
    /// Managed objects that never move (pinned, classes, objects seen by native code).
    NonMoving,
    /// Managed objects too large for the ordinary allocators, one pool each.
    Humongous,
    /// Interpreter frames (a LIFO stack of frames with an overflow limit).
    Frames,
}

impl SpaceType {
    /// The number of spaces.
    pub const COUNT: usize = 7;

    /// Every space, in index order.
    pub const ALL: [SpaceType; Self::COUNT] = [
        SpaceType::Code,
        SpaceType::CompilerInternal,
        SpaceType::RuntimeInternal,
        SpaceType::Object,
        SpaceType::NonMoving,
        SpaceType::Humongous,
        SpaceType::Frames,
    ];

    /// The spaces of managed (collected) objects: object, non-moving and
    /// humongous.
    pub const MANAGED: [SpaceType; 3] = [
        SpaceType::Object,
        SpaceType::NonMoving,
        SpaceType::Humongous,
    ];

    /// A dense index in `0..COUNT`, for tables indexed by space.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The space with the given [`index`](Self::index).
    pub const fn from_index(index: usize) -> Option<SpaceType> {
        if index < Self::COUNT {
            Some(Self::ALL[index])
        } else {
            None
        }
    }

    /// The kebab-case name used in profiles, statistics and error messages.
    pub const fn name(self) -> &'static str {
        match self {
            SpaceType::Code => "code",
            SpaceType::CompilerInternal => "compiler-internal",
            SpaceType::RuntimeInternal => "runtime-internal",
            SpaceType::Object => "object",
            SpaceType::NonMoving => "non-moving",
            SpaceType::Humongous => "humongous",
            SpaceType::Frames => "frames",
        }
    }
}

impl fmt::Display for SpaceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`SpaceType`] from an unknown name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownSpace(pub String);

impl fmt::Display for UnknownSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown space `{}` (known spaces:", self.0)?;
        for space in SpaceType::ALL {
            write!(f, " {space}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownSpace {}

impl FromStr for SpaceType {
    type Err = UnknownSpace;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpaceType::ALL
            .into_iter()
            .find(|space| space.name() == s)
            .ok_or_else(|| UnknownSpace(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (i, space) in SpaceType::ALL.into_iter().enumerate() {
            assert_eq!(space.index(), i);
            assert_eq!(SpaceType::from_index(i), Some(space));
            assert_eq!(space.to_string().parse::<SpaceType>(), Ok(space));
        }
        assert_eq!(SpaceType::from_index(SpaceType::COUNT), None);
        let err = "heap".parse::<SpaceType>().unwrap_err().to_string();
        assert!(
            err.contains("`heap`") && err.contains("non-moving"),
            "{err}"
        );
    }
}
