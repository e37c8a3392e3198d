//! The layouts of Lox's heap objects, their field accessors, and the
//! collector's view of them (sizes and reference slots).
//!
//! Every object starts with rtmem's one-word header, whose type word is
//! [`TYPE_BASE`] (`"LOX"`, so a heap shared with another language can tell
//! Lox objects apart) plus the object's tag in the low byte. After the
//! header (offsets in bytes; *ref* is an `Option<ObjectRef>` word, *value* a
//! NaN-boxed [`Value`]):
//!
//! | tag | layout | size |
//! |---|---|---|
//! | [`STRING`] | 8: length `u32`, 12: FNV-1a hash `u32`, 16: bytes | 16 + len, rounded to 8 |
//! | [`FUNCTION`] | 8: arity `u32`, 12: upvalue count `u32`, 16: name ref (null for the script), 24: constants ref ([`VALUES`]), 32: code pointer, 40: code length | 48 |
//! | [`VALUES`] | 8: length, 16: values | 16 + 8 n |
//! | [`CLOSURE`] | 8: function ref, 16: upvalue count, 24: upvalue refs | 24 + 8 n |
//! | [`UPVALUE`] | 8: stack slot while open ([`UPVALUE_CLOSED`] once closed), 16: closed value | 24 |
//! | [`CLASS`] | 8: name ref, 16: methods ref ([`TABLE`]), 24: initializer ref (closure) | 32 |
//! | [`INSTANCE`] | 8: class ref, 16: fields ref ([`TABLE`]) | 24 |
//! | [`BOUND_METHOD`] | 8: receiver value, 16: method ref (closure) | 24 |
//! | [`NATIVE`] | 8: index into the native-function table | 16 |
//! | [`TABLE`] | 8: capacity, 16: count, 24: entries of (key ref, value) | 24 + 16 cap |
//!
//! Value arrays (constant pools) are allocated pinned, in the non-moving
//! space: a call frame caches a pointer to its constants.
//!
//! A function's bytecode and line table are not in the moving heap: they
//! are one block of the runtime-internal space (see [`chunk`](crate::chunk)),
//! so the interpreter's instruction pointer stays valid across collections.
//!
//! The accessors below take an `ObjectRef` that must be a live object of the
//! named type, read after the last collection point (allocation, poll,
//! collection): that is the interpreter's invariant, checked in debug
//! builds by the tag assertions.

use rtmem_gc::object::HEADER_BYTES;
use rtmem_gc::{Header, Mutator, ObjectRef, SlotVisitor};

use crate::binding::LoxVm;
use crate::value::{Value, visit_value};

/// The type word of every Lox object, without its tag: `"LOX"` above the tag byte.
pub(crate) const TYPE_BASE: u64 = 0x4c4f58 << 8;

/// A string: length, hash, bytes.
pub(crate) const STRING: u8 = 1;
/// A compiled function.
pub(crate) const FUNCTION: u8 = 2;
/// An array of values (a function's constants).
pub(crate) const VALUES: u8 = 3;
/// A closure: a function and its captured upvalues.
pub(crate) const CLOSURE: u8 = 4;
/// A captured variable.
pub(crate) const UPVALUE: u8 = 5;
/// A class.
pub(crate) const CLASS: u8 = 6;
/// An instance of a class.
pub(crate) const INSTANCE: u8 = 7;
/// A method bound to its receiver.
pub(crate) const BOUND_METHOD: u8 = 8;
/// A native function.
pub(crate) const NATIVE: u8 = 9;
/// The entries of a hash table (fields, methods, globals).
pub(crate) const TABLE: u8 = 10;

/// The word size: slots and header.
pub(crate) const WORD: usize = 8;

/// Field offsets of a string.
pub(crate) mod string {
    pub(crate) const LEN: usize = 8;
    pub(crate) const HASH: usize = 12;
    pub(crate) const BYTES: usize = 16;
}

/// Field offsets of a function.
pub(crate) mod function {
    pub(crate) const ARITY: usize = 8;
    pub(crate) const UPVALUES: usize = 12;
    pub(crate) const NAME: usize = 16;
    pub(crate) const CONSTANTS: usize = 24;
    pub(crate) const CODE: usize = 32;
    pub(crate) const CODE_LEN: usize = 40;
    pub(crate) const SIZE: usize = 48;
}

/// Field offsets of a value array.
pub(crate) mod values {
    pub(crate) const LEN: usize = 8;
    pub(crate) const ITEMS: usize = 16;
}

/// Field offsets of a closure.
pub(crate) mod closure {
    pub(crate) const FUNCTION: usize = 8;
    pub(crate) const COUNT: usize = 16;
    pub(crate) const UPVALUES: usize = 24;
}

/// Field offsets of an upvalue.
pub(crate) mod upvalue {
    pub(crate) const SLOT: usize = 8;
    pub(crate) const CLOSED: usize = 16;
    pub(crate) const SIZE: usize = 24;
}

/// Field offsets of a class.
pub(crate) mod class {
    pub(crate) const NAME: usize = 8;
    pub(crate) const METHODS: usize = 16;
    pub(crate) const INIT: usize = 24;
    pub(crate) const SIZE: usize = 32;
}

/// Field offsets of an instance.
pub(crate) mod instance {
    pub(crate) const CLASS: usize = 8;
    pub(crate) const FIELDS: usize = 16;
    pub(crate) const SIZE: usize = 24;
}

/// Field offsets of a bound method.
pub(crate) mod bound {
    pub(crate) const RECEIVER: usize = 8;
    pub(crate) const METHOD: usize = 16;
    pub(crate) const SIZE: usize = 24;
}

/// Field offsets of a native function.
pub(crate) mod native {
    pub(crate) const INDEX: usize = 8;
    pub(crate) const SIZE: usize = 16;
}

/// Field offsets of a table's entries.
pub(crate) mod table {
    pub(crate) const CAPACITY: usize = 8;
    pub(crate) const COUNT: usize = 16;
    pub(crate) const ENTRIES: usize = 24;
    /// An entry: key ref, then value.
    pub(crate) const ENTRY: usize = 16;
}

/// The stack slot of a closed upvalue.
pub(crate) const UPVALUE_CLOSED: usize = usize::MAX;

/// The full type word of objects with tag `tag`.
#[inline(always)]
pub(crate) const fn type_word(tag: u8) -> u64 {
    TYPE_BASE | tag as u64
}

/// The tag of an object.
#[inline(always)]
pub(crate) fn tag(object: ObjectRef) -> u8 {
    // SAFETY: every object starts with its header word (the accessor contract).
    let header = Header::from_bits(unsafe { (object.addr() as *const u64).read() });
    tag_of(object, header)
}

/// The tag in `header`, checked to be a Lox type word.
#[inline(always)]
fn tag_of(object: ObjectRef, header: Header) -> u8 {
    let word = header.type_word();
    debug_assert_eq!(
        word & !0xff,
        TYPE_BASE,
        "{object:?} is not a Lox object (type word {word:#x})"
    );
    word as u8
}

/// Whether `value` is an object with tag `t`.
#[inline(always)]
pub(crate) fn is(value: Value, t: u8) -> bool {
    value.as_object().is_some_and(|o| tag(o) == t)
}

/// Reads the plain field of type `T` at `offset` of `object`.
#[inline(always)]
pub(crate) fn read<T: Copy>(object: ObjectRef, offset: usize) -> T {
    debug_assert!(offset >= HEADER_BYTES && offset.is_multiple_of(align_of::<T>()));
    // SAFETY: the accessor contract: a live object with such a field there.
    unsafe { ((object.addr() + offset) as *const T).read() }
}

/// Writes the plain (non-reference) field of type `T` at `offset` of `object`.
#[inline(always)]
pub(crate) fn write<T: Copy>(object: ObjectRef, offset: usize, value: T) {
    debug_assert!(offset >= HEADER_BYTES && offset.is_multiple_of(align_of::<T>()));
    // SAFETY: the accessor contract: a live object with such a field there.
    unsafe { ((object.addr() + offset) as *mut T).write(value) }
}

/// Reads the reference field at `offset` of `object`.
#[inline(always)]
pub(crate) fn read_ref(object: ObjectRef, offset: usize) -> Option<ObjectRef> {
    read(object, offset)
}

/// Stores `value` into the reference field at `offset` of `object`, with
/// the collector's barriers.
#[inline(always)]
pub(crate) fn store_ref(
    m: &mut Mutator<LoxVm>,
    object: ObjectRef,
    offset: usize,
    value: Option<ObjectRef>,
) {
    // SAFETY: the accessor contract: a reference field of a live object.
    unsafe { m.write_ref(object, offset, value) }
}

/// Stores `value` into the value field at `offset` of `object`, then tells
/// the collector's barriers which references the slot held before and after.
#[inline(always)]
pub(crate) fn store_value(m: &mut Mutator<LoxVm>, object: ObjectRef, offset: usize, value: Value) {
    let old: Value = read(object, offset);
    write(object, offset, value);
    m.write_barrier(object, offset, old.as_object(), value.as_object());
}

/// A string's bytes. The slice is valid until the next collection point.
#[inline(always)]
pub(crate) fn string_bytes<'a>(s: ObjectRef) -> &'a [u8] {
    debug_assert_eq!(tag(s), STRING);
    let len = read::<u32>(s, string::LEN) as usize;
    // SAFETY: a live string holds `len` bytes at BYTES; the caller drops the
    // slice before the string could move.
    unsafe { std::slice::from_raw_parts((s.addr() + string::BYTES) as *const u8, len) }
}

/// A string's hash.
#[inline(always)]
pub(crate) fn string_hash(s: ObjectRef) -> u32 {
    read(s, string::HASH)
}

/// FNV-1a, as clox hashes strings.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

/// The size of a string of `len` bytes.
pub(crate) fn string_size(len: usize) -> usize {
    (string::BYTES + len).next_multiple_of(WORD)
}

/// The size of a value array of `len` values.
pub(crate) fn values_size(len: usize) -> usize {
    values::ITEMS + WORD * len
}

/// The size of a closure with `count` upvalues.
pub(crate) fn closure_size(count: usize) -> usize {
    closure::UPVALUES + WORD * count
}

/// The size of a table of `capacity` entries.
pub(crate) fn table_size(capacity: usize) -> usize {
    table::ENTRIES + table::ENTRY * capacity
}

/// A function's name (`None` for the top-level script).
#[inline(always)]
pub(crate) fn function_name(function: ObjectRef) -> Option<ObjectRef> {
    read_ref(function, function::NAME)
}

/// The function of a closure.
#[inline(always)]
pub(crate) fn closure_function(closure: ObjectRef) -> ObjectRef {
    debug_assert_eq!(tag(closure), CLOSURE);
    read_ref(closure, closure::FUNCTION).expect("a closure has a function")
}

/// The object's size as allocated (the collector's `ObjectModel::size`).
pub(crate) fn size(object: ObjectRef, header: Header) -> usize {
    match tag_of(object, header) {
        STRING => string_size(read::<u32>(object, string::LEN) as usize),
        FUNCTION => function::SIZE,
        VALUES => values_size(read(object, values::LEN)),
        CLOSURE => closure_size(read(object, closure::COUNT)),
        UPVALUE => upvalue::SIZE,
        CLASS => class::SIZE,
        INSTANCE => instance::SIZE,
        BOUND_METHOD => bound::SIZE,
        NATIVE => native::SIZE,
        TABLE => table_size(read(object, table::CAPACITY)),
        t => panic!("{object:?} has unknown Lox tag {t}"),
    }
}

/// Visits every reference slot of `object` (the collector's `Scanning::scan_object`).
pub(crate) fn scan(object: ObjectRef, header: Header, v: &mut impl SlotVisitor) {
    match tag_of(object, header) {
        STRING | NATIVE => {}
        FUNCTION => {
            visit_ref(object, function::NAME, v);
            visit_ref(object, function::CONSTANTS, v);
        }
        VALUES => {
            for i in 0..read::<usize>(object, values::LEN) {
                visit_val(object, values::ITEMS + WORD * i, v);
            }
        }
        CLOSURE => {
            visit_ref(object, closure::FUNCTION, v);
            for i in 0..read::<usize>(object, closure::COUNT) {
                visit_ref(object, closure::UPVALUES + WORD * i, v);
            }
        }
        UPVALUE => visit_val(object, upvalue::CLOSED, v),
        CLASS => {
            visit_ref(object, class::NAME, v);
            visit_ref(object, class::METHODS, v);
            visit_ref(object, class::INIT, v);
        }
        INSTANCE => {
            visit_ref(object, instance::CLASS, v);
            visit_ref(object, instance::FIELDS, v);
        }
        BOUND_METHOD => {
            visit_val(object, bound::RECEIVER, v);
            visit_ref(object, bound::METHOD, v);
        }
        TABLE => {
            for i in 0..read::<usize>(object, table::CAPACITY) {
                let entry = table::ENTRIES + table::ENTRY * i;
                visit_ref(object, entry, v);
                visit_val(object, entry + WORD, v);
            }
        }
        t => panic!("{object:?} has unknown Lox tag {t}"),
    }
}

/// Visits the reference field at `offset` of `object`.
#[inline(always)]
fn visit_ref(object: ObjectRef, offset: usize, v: &mut impl SlotVisitor) {
    // SAFETY: the accessor contract (the collector scans live objects, at
    // their layout's reference offsets); `Option<ObjectRef>` is a word.
    v.visit(unsafe { &mut *((object.addr() + offset) as *mut Option<ObjectRef>) });
}

/// Visits the value field at `offset` of `object`.
#[inline(always)]
fn visit_val(object: ObjectRef, offset: usize, v: &mut impl SlotVisitor) {
    // SAFETY: the accessor contract: a value field of a live object.
    unsafe { visit_value((object.addr() + offset) as *mut Value, v) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_clox() {
        // clox's hashString of "" and "a".
        assert_eq!(hash_bytes(b""), 2_166_136_261);
        assert_eq!(hash_bytes(b"a"), 0xe40c_292c);
    }

    #[test]
    fn sizes_are_word_multiples() {
        assert_eq!(string_size(0), 16);
        assert_eq!(string_size(1), 24);
        assert_eq!(string_size(8), 24);
        assert_eq!(table_size(8), 24 + 128);
        assert_eq!(closure_size(2), 40);
        assert_eq!(type_word(STRING) >> 8, 0x4c4f58);
    }
}
