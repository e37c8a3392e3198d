//! Object references and the one-word object header.
//!
//! ```text
//!  63                                   8 7      4 3    2  1 0
//! +--------------------------------------+--------+------+-----+
//! |  VM type word (56 bits)              |  age   | flags|state|
//! +--------------------------------------+--------+------+-----+
//! ```
//!
//! - **state** `00`: an ordinary object; `01`: forwarded — the whole word
//!   is the new address with the low bits `01` (addresses are 8-aligned);
//!   `11`: being copied by a young collection (for the few instructions
//!   between claiming the object and publishing its forwarding address).
//! - **flags**: bit 2 = registered for finalization; bit 3 = *filler*: not
//!   an object but a gap in a young region (its "type word" is its length),
//!   so that young regions can be walked object by object.
//! - **age**: the young collections the object survived (0..=15).
//! - **type word**: the runtime's; rtmem stores and returns it and never
//!   interprets it (a descriptor pointer fits: user-space addresses are below
//!   2^56).
//!
//! Mark bits are not in the header: they live in a side
//! [`MarkBitmap`](crate::bitmap::MarkBitmap).
//!
//! ```
//! use rtmem_gc::object::Header;
//!
//! let h = Header::new(0x7f12_3456_7890).with_age(3).with_finalizable(true);
//! assert_eq!(h.type_word(), 0x7f12_3456_7890);
//! assert_eq!((h.age(), h.is_finalizable(), h.forwarded_to()), (3, true, None));
//! let moved = Header::forwarding(0x1000);
//! assert_eq!(moved.forwarded_to(), Some(0x1000));
//! ```

use std::fmt;
use std::num::NonZeroUsize;

/// The size of the header every managed object starts with.
pub const HEADER_BYTES: usize = 8;

/// The alignment (and size granule) of every managed object.
pub const OBJECT_ALIGN: usize = 8;

/// A reference to a managed object: a non-null, 8-aligned address.
/// `Option<ObjectRef>` is one word, with null as `None`, so reference slots
/// are plain words a JIT can load and store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ObjectRef(NonZeroUsize);

impl ObjectRef {
    /// The reference to the object at `addr`, or `None` for 0.
    ///
    /// # Panics
    /// If `addr` is not 8-aligned (not an object start).
    #[inline]
    pub fn from_addr(addr: usize) -> Option<ObjectRef> {
        assert!(
            addr.is_multiple_of(OBJECT_ALIGN),
            "{addr:#x} is not an object address (objects are 8-aligned)"
        );
        NonZeroUsize::new(addr).map(ObjectRef)
    }

    /// The object's address (where its header is).
    #[inline]
    pub fn addr(self) -> usize {
        self.0.get()
    }

    /// The address of the first byte after the header.
    #[inline]
    pub fn payload(self) -> usize {
        self.addr() + HEADER_BYTES
    }
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({:#x})", self.addr())
    }
}

const STATE_MASK: u64 = 0b11;
const FORWARDED: u64 = 0b01;
const BUSY: u64 = 0b11;
const FINALIZABLE: u64 = 1 << 2;
const FILLER: u64 = 1 << 3;
const AGE_SHIFT: u32 = 4;
const AGE_MASK: u64 = 0xF << AGE_SHIFT;
const TYPE_SHIFT: u32 = 8;

/// The largest type word a header can hold (56 bits).
pub const MAX_TYPE_WORD: u64 = (1 << (64 - TYPE_SHIFT)) - 1;

/// The largest age a header can count to.
pub const MAX_AGE: u8 = 15;

/// An object header: one word, see the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Header(u64);

impl Header {
    /// The header of a new object of the runtime's type `type_word`: age 0,
    /// no flags.
    ///
    /// # Panics
    /// If `type_word` does not fit in 56 bits.
    #[inline]
    pub const fn new(type_word: u64) -> Header {
        assert!(
            type_word <= MAX_TYPE_WORD,
            "type word does not fit in 56 bits"
        );
        Header(type_word << TYPE_SHIFT)
    }

    /// A forwarding header pointing to the object's new copy at `new_addr`.
    ///
    /// # Panics
    /// If `new_addr` is not 8-aligned or is 0.
    #[inline]
    pub fn forwarding(new_addr: usize) -> Header {
        assert!(
            new_addr != 0 && new_addr.is_multiple_of(OBJECT_ALIGN),
            "{new_addr:#x} is not an object address"
        );
        Header(new_addr as u64 | FORWARDED)
    }

    /// The header of a filler: `len` bytes (a multiple of 8) that hold no
    /// object, in a young region.
    #[inline]
    pub(crate) fn filler(len: usize) -> Header {
        Header(((len as u64) << TYPE_SHIFT) | FILLER)
    }

    /// The header of an object a young collection is copying right now.
    pub(crate) const BUSY: Header = Header(BUSY);

    /// The length of the gap, if this is a filler header.
    #[inline]
    pub(crate) fn filler_len(self) -> Option<usize> {
        (self.0 & (STATE_MASK | FILLER) == FILLER).then_some((self.0 >> TYPE_SHIFT) as usize)
    }

    /// The raw word, as stored in memory.
    #[inline]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// A header from its raw word.
    #[inline]
    pub const fn from_bits(bits: u64) -> Header {
        Header(bits)
    }

    /// The new address, if the object was forwarded.
    #[inline]
    pub fn forwarded_to(self) -> Option<usize> {
        (self.0 & STATE_MASK == FORWARDED).then_some((self.0 & !STATE_MASK) as usize)
    }

    /// The runtime's type word.
    ///
    /// # Panics
    /// In debug builds, if the header is a forwarding header.
    #[inline]
    pub fn type_word(self) -> u64 {
        debug_assert!(
            self.forwarded_to().is_none(),
            "type_word of a forwarding header"
        );
        self.0 >> TYPE_SHIFT
    }

    /// The young collections survived.
    #[inline]
    pub fn age(self) -> u8 {
        ((self.0 & AGE_MASK) >> AGE_SHIFT) as u8
    }

    /// This header with the age set to `age` (at most [`MAX_AGE`]).
    ///
    /// # Panics
    /// If `age > MAX_AGE`.
    #[inline]
    pub fn with_age(self, age: u8) -> Header {
        assert!(
            age <= MAX_AGE,
            "age {age} does not fit in a header (at most {MAX_AGE})"
        );
        Header((self.0 & !AGE_MASK) | (u64::from(age) << AGE_SHIFT))
    }

    /// This header one collection older (saturating at [`MAX_AGE`]).
    #[inline]
    pub fn aged(self) -> Header {
        self.with_age((self.age() + 1).min(MAX_AGE))
    }

    /// Whether the object is registered for finalization.
    #[inline]
    pub fn is_finalizable(self) -> bool {
        self.0 & FINALIZABLE != 0
    }

    /// This header with the finalization flag set or cleared.
    #[inline]
    pub fn with_finalizable(self, on: bool) -> Header {
        if on {
            Header(self.0 | FINALIZABLE)
        } else {
            Header(self.0 & !FINALIZABLE)
        }
    }
}

/// Sets or clears the finalization flag in the header of `object`.
///
/// # Safety
/// `object` is an allocated object whose header is not a forwarding header,
/// and no other thread reads or writes that header meanwhile (it is new, or
/// the world is stopped).
pub(crate) unsafe fn set_finalizable(object: ObjectRef, on: bool) {
    let header = object.addr() as *mut u64;
    // SAFETY: the caller guarantees an allocated object's header, ours alone.
    unsafe {
        header.write(
            Header::from_bits(header.read())
                .with_finalizable(on)
                .to_bits(),
        )
    };
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.forwarded_to() {
            Some(to) => write!(f, "Header(forwarded to {to:#x})"),
            None => f
                .debug_struct("Header")
                .field("type_word", &format_args!("{:#x}", self.type_word()))
                .field("age", &self.age())
                .field("finalizable", &self.is_finalizable())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn option_of_a_reference_is_one_word() {
        assert_eq!(size_of::<Option<ObjectRef>>(), size_of::<usize>());
        assert_eq!(ObjectRef::from_addr(0), None);
        let r = ObjectRef::from_addr(0x1008).unwrap();
        assert_eq!((r.addr(), r.payload()), (0x1008, 0x1010));
        assert_eq!(format!("{r:?}"), "ObjectRef(0x1008)");
    }

    #[test]
    #[should_panic(expected = "0x1004 is not an object address")]
    fn misaligned_references_are_refused() {
        let _ = ObjectRef::from_addr(0x1004);
    }

    #[test]
    #[should_panic(expected = "age 16 does not fit")]
    fn ages_past_fifteen_are_refused() {
        let _ = Header::new(1).with_age(16);
    }

    #[test]
    fn aging_saturates() {
        let mut h = Header::new(9);
        for _ in 0..40 {
            h = h.aged();
        }
        assert_eq!((h.age(), h.type_word()), (MAX_AGE, 9));
    }

    proptest! {
        #[test]
        fn fields_round_trip_independently(ty in 0..=MAX_TYPE_WORD, age in 0..=MAX_AGE, fin: bool, addr in 1usize..(1 << 47)) {
            let h = Header::new(ty).with_age(age).with_finalizable(fin);
            prop_assert_eq!(h.type_word(), ty);
            prop_assert_eq!(h.age(), age);
            prop_assert_eq!(h.is_finalizable(), fin);
            prop_assert_eq!(h.forwarded_to(), None);
            prop_assert_eq!(Header::from_bits(h.to_bits()), h);
            // Changing one field leaves the others alone.
            let h2 = h.with_age(MAX_AGE - age).with_finalizable(!fin);
            prop_assert_eq!(h2.type_word(), ty);
            let to = addr * OBJECT_ALIGN;
            prop_assert_eq!(Header::forwarding(to).forwarded_to(), Some(to));
        }
    }
}
