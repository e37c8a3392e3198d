//! A small reference runtime on rtmem's collector: the binding that tests,
//! examples and benchmarks share, and a worked example of how a runtime
//! author writes one.
//!
//! Object types (the low byte of the header's type word):
//!
//! | type | layout after the 8-byte header | references |
//! |---|---|---|
//! | [`PAIR`] | `left`, `right` | both |
//! | [`ARRAY`] | `len`, `len` slots | every slot |
//! | [`BLOB`] | `len`, `len` bytes (rounded up to 8) | none |
//! | [`WEAK`], [`SOFT`], [`PHANTOM`] | `referent` | the referent, weakly |
//!
//! Each mutator's roots are a stack of slots ([`Roots`]); the runtime's
//! globals are a vector of slots, and interned blobs live in a weak table
//! that the collector cleans ([`TestVm::intern`]).
//!
//! The accessors on [`TestMutator`] check, in every build, that an object
//! lies in one of the heap's spaces and has the expected type, and panic
//! with a message naming the address otherwise.
//!
//! ```
//! use std::sync::Arc;
//! use rtmem_gc::{GcCause, GcConfig, Heap};
//! use rtmem_spaces::{Spaces, SpacesConfig};
//! use rtmem_testvm::{TestMutator, TestVm};
//!
//! let spaces = Arc::new(Spaces::new(SpacesConfig::default()).unwrap());
//! let heap = Heap::new(spaces, GcConfig::default(), TestVm::default()).unwrap();
//! let mut m = heap.register(Default::default());
//! let leaf = m.pair(None, None).unwrap();
//! m.push_root(Some(leaf));
//! let _garbage = m.pair(None, None).unwrap();
//! m.collect(GcCause::Explicit);
//! assert_eq!(heap.stats().last().unwrap().objects_freed, 1);
//! let kept = m.root(0).unwrap();
//! assert_eq!((m.left(kept), m.right(kept)), (None, None));
//! ```

use std::collections::HashMap;

use parking_lot::Mutex;
use rtmem_base::{AllocError, SpaceType};
use rtmem_gc::{
    Collection, Header, Mutator, ObjectModel, ObjectRef, ReferenceKind, Scanning, SlotVisitor, VM,
};

/// Type tag of a pair of references.
pub const PAIR: u64 = 1;
/// Type tag of an array of references.
pub const ARRAY: u64 = 2;
/// Type tag of a byte blob.
pub const BLOB: u64 = 3;
/// Type tag of a weak reference object.
pub const WEAK: u64 = 4;
/// Type tag of a soft reference object.
pub const SOFT: u64 = 5;
/// Type tag of a phantom reference object.
pub const PHANTOM: u64 = 6;

/// The size of a slot and of the header.
pub(crate) const WORD: usize = 8;

pub mod trees;

/// The test runtime's global state: its global roots and its interned-blob
/// table (a weak table: entries whose blob died are dropped by the collector).
#[derive(Default)]
pub struct TestVm {
    globals: Mutex<Vec<Option<ObjectRef>>>,
    interned: Mutex<HashMap<Vec<u8>, ObjectRef>>,
}

/// One mutator's roots: a stack of slots (the runtime's frames and handles).
#[derive(Default, Debug)]
pub struct Roots {
    /// The slots, bottom first.
    pub stack: Vec<Option<ObjectRef>>,
}

impl TestVm {
    /// Adds a global root; returns its index.
    pub fn add_global(&self, object: Option<ObjectRef>) -> usize {
        let mut g = self.globals.lock();
        g.push(object);
        g.len() - 1
    }

    /// The global root at `index`.
    pub fn global(&self, index: usize) -> Option<ObjectRef> {
        self.globals.lock()[index]
    }

    /// Sets the global root at `index`.
    pub fn set_global(&self, index: usize, object: Option<ObjectRef>) {
        self.globals.lock()[index] = object;
    }

    /// Entries in the interned-blob table.
    pub fn interned_count(&self) -> usize {
        self.interned.lock().len()
    }

    /// The interned blob with these bytes, if it is still alive. (A mutator
    /// that keeps it must pass it to
    /// [`Mutator::keep_alive`](rtmem_gc::Mutator::keep_alive) first, as
    /// [`intern`](Self::intern) does.)
    pub fn lookup_interned(&self, bytes: &[u8]) -> Option<ObjectRef> {
        self.interned.lock().get(bytes).copied()
    }

    /// The blob with these bytes from the intern table, or a new one added
    /// to it. The table holds it weakly: root it to keep it.
    pub fn intern(m: &mut Mutator<TestVm>, bytes: &[u8]) -> Result<ObjectRef, AllocError> {
        if let Some(found) = m.heap().vm().lookup_interned(bytes) {
            // Read out of a weak table: see `Mutator::keep_alive`.
            m.keep_alive(found);
            return Ok(found);
        }
        let blob = m.blob(bytes)?;
        m.heap().vm().interned.lock().insert(bytes.to_vec(), blob);
        Ok(blob)
    }
}

fn tag(header: Header) -> u64 {
    header.type_word() & 0xFF
}

fn word(object: ObjectRef, index: usize) -> *mut usize {
    (object.addr() + WORD * index) as *mut usize
}

pub(crate) fn slot<'a>(object: ObjectRef, index: usize) -> &'a mut Option<ObjectRef> {
    // SAFETY: called by the collector (or a checked accessor) on a live
    // object with a slot at `index`; `Option<ObjectRef>` is a word.
    unsafe { &mut *(word(object, index) as *mut Option<ObjectRef>) }
}

fn length(object: ObjectRef) -> usize {
    // SAFETY: arrays and blobs keep their length in the word after the header.
    unsafe { word(object, 1).read() }
}

/// The object model of the test runtime.
pub struct Model;

impl ObjectModel for Model {
    fn size(object: ObjectRef, header: Header) -> usize {
        match tag(header) {
            PAIR => 3 * WORD,
            ARRAY => 2 * WORD + WORD * length(object),
            BLOB => 2 * WORD + length(object).next_multiple_of(WORD),
            WEAK | SOFT | PHANTOM => 2 * WORD,
            t => panic!("object {object:?} has unknown type tag {t}"),
        }
    }

    fn reference(_object: ObjectRef, header: Header) -> Option<(ReferenceKind, usize)> {
        let kind = match tag(header) {
            WEAK => ReferenceKind::Weak,
            SOFT => ReferenceKind::Soft,
            PHANTOM => ReferenceKind::Phantom,
            _ => return None,
        };
        Some((kind, WORD))
    }
}

/// Where the test runtime's references are.
pub struct Scan;

impl Scanning<TestVm> for Scan {
    #[inline]
    fn scan_object(object: ObjectRef, header: Header, visitor: &mut impl SlotVisitor) {
        match tag(header) {
            PAIR => {
                visitor.visit(slot(object, 1));
                visitor.visit(slot(object, 2));
            }
            ARRAY => {
                for i in 0..length(object) {
                    visitor.visit(slot(object, 2 + i));
                }
            }
            _ => {}
        }
    }

    fn scan_mutator_roots(roots: &mut Roots, visitor: &mut impl SlotVisitor) {
        roots.stack.iter_mut().for_each(|s| visitor.visit(s));
    }

    fn scan_global_roots(vm: &TestVm, visitor: &mut impl SlotVisitor) {
        vm.globals.lock().iter_mut().for_each(|s| visitor.visit(s));
    }
}

/// The test runtime's collection callbacks.
pub struct Callbacks;

impl Collection<TestVm> for Callbacks {
    fn process_weak_tables(vm: &TestVm, survivor: &dyn Fn(ObjectRef) -> Option<ObjectRef>) {
        vm.interned.lock().retain(|_, blob| match survivor(*blob) {
            Some(moved) => {
                *blob = moved;
                true
            }
            None => false,
        });
    }
}

impl VM for TestVm {
    type ObjectModel = Model;
    type Scanning = Scan;
    type Collection = Callbacks;
    type MutatorRoots = Roots;
}

/// The test runtime's operations on a mutator: allocation that keeps its
/// arguments rooted, checked field access, and the root stack.
pub trait TestMutator {
    /// A new pair.
    fn pair(
        &mut self,
        left: Option<ObjectRef>,
        right: Option<ObjectRef>,
    ) -> Result<ObjectRef, AllocError>;
    /// A new array of `len` null slots.
    fn array(&mut self, len: usize) -> Result<ObjectRef, AllocError>;
    /// A new blob holding `bytes`.
    fn blob(&mut self, bytes: &[u8]) -> Result<ObjectRef, AllocError>;
    /// A new reference object of `tag` ([`WEAK`], [`SOFT`] or [`PHANTOM`]).
    fn reference(&mut self, tag: u64, referent: Option<ObjectRef>)
    -> Result<ObjectRef, AllocError>;
    /// A pair's left reference.
    fn left(&self, pair: ObjectRef) -> Option<ObjectRef>;
    /// A pair's right reference.
    fn right(&self, pair: ObjectRef) -> Option<ObjectRef>;
    /// Sets a pair's left reference.
    fn set_left(&mut self, pair: ObjectRef, value: Option<ObjectRef>);
    /// Sets a pair's right reference.
    fn set_right(&mut self, pair: ObjectRef, value: Option<ObjectRef>);
    /// An array's length.
    fn len(&self, array: ObjectRef) -> usize;
    /// An array's element.
    fn get(&self, array: ObjectRef, index: usize) -> Option<ObjectRef>;
    /// Sets an array's element.
    fn set(&mut self, array: ObjectRef, index: usize, value: Option<ObjectRef>);
    /// A blob's bytes.
    fn bytes(&self, blob: ObjectRef) -> Vec<u8>;
    /// A reference object's referent (null once cleared), kept alive
    /// through a concurrent cycle under way
    /// ([`Mutator::keep_alive`](rtmem_gc::Mutator::keep_alive)).
    fn referent(&mut self, reference: ObjectRef) -> Option<ObjectRef>;
    /// The type tag of an object.
    fn tag(&self, object: ObjectRef) -> u64;
    /// Pushes a root; returns its index.
    fn push_root(&mut self, object: Option<ObjectRef>) -> usize;
    /// The root at `index`.
    fn root(&mut self, index: usize) -> Option<ObjectRef>;
    /// Sets the root at `index`.
    fn set_root(&mut self, index: usize, object: Option<ObjectRef>);
    /// Pops roots down to `len`.
    fn truncate_roots(&mut self, len: usize);
}

/// Allocates an object of `tag` while `keep` stays rooted (a collection may
/// run inside the allocation), and returns it with `keep` read back from
/// the root slots, where a moving collector would have updated them.
fn alloc_keeping<const N: usize>(
    m: &mut Mutator<TestVm>,
    tag: u64,
    size: usize,
    keep: [Option<ObjectRef>; N],
) -> Result<(ObjectRef, [Option<ObjectRef>; N]), AllocError> {
    let base = m.roots().stack.len();
    m.roots().stack.extend(keep);
    let object = m.alloc(tag, size);
    let kept = std::array::from_fn(|i| m.roots().stack[base + i]);
    m.roots().stack.truncate(base);
    Ok((object?, kept))
}

/// Panics unless `object` lies in a heap space and has type `want`
/// (`None`: any type); returns its tag.
pub(crate) fn check(m: &Mutator<TestVm>, object: ObjectRef, want: Option<u64>) -> u64 {
    let space = m.heap().spaces().pools().space_of(object.addr());
    assert!(
        space.is_some_and(|s| SpaceType::MANAGED.contains(&s)),
        "{object:?} is not in the object heap (space {space:?})"
    );
    // SAFETY: the address is in a heap pool, 8-aligned, and (by the caller's
    // contract) an object start: its first word is a header.
    let t = tag(Header::from_bits(unsafe {
        (object.addr() as *const u64).read()
    }));
    if let Some(want) = want {
        assert_eq!(t, want, "{object:?} has type tag {t}, expected {want}");
    }
    t
}

impl TestMutator for Mutator<TestVm> {
    fn pair(
        &mut self,
        left: Option<ObjectRef>,
        right: Option<ObjectRef>,
    ) -> Result<ObjectRef, AllocError> {
        let (pair, [left, right]) = alloc_keeping(self, PAIR, 3 * WORD, [left, right])?;
        self.set_left(pair, left);
        self.set_right(pair, right);
        Ok(pair)
    }

    fn array(&mut self, len: usize) -> Result<ObjectRef, AllocError> {
        let array = self.alloc(ARRAY, 2 * WORD + WORD * len)?;
        // SAFETY: a fresh array: its length word follows the header.
        unsafe { word(array, 1).write(len) };
        Ok(array)
    }

    fn blob(&mut self, bytes: &[u8]) -> Result<ObjectRef, AllocError> {
        let blob = self.alloc(BLOB, 2 * WORD + bytes.len())?;
        // SAFETY: a fresh blob of 16 + len bytes: length word, then bytes.
        unsafe {
            word(blob, 1).write(bytes.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), word(blob, 2).cast(), bytes.len());
        }
        Ok(blob)
    }

    fn reference(
        &mut self,
        tag: u64,
        referent: Option<ObjectRef>,
    ) -> Result<ObjectRef, AllocError> {
        assert!(
            matches!(tag, WEAK | SOFT | PHANTOM),
            "type tag {tag} is not a reference kind"
        );
        let (reference, [referent]) = alloc_keeping(self, tag, 2 * WORD, [referent])?;
        *slot(reference, 1) = referent;
        Ok(reference)
    }

    fn left(&self, pair: ObjectRef) -> Option<ObjectRef> {
        check(self, pair, Some(PAIR));
        *slot(pair, 1)
    }

    fn right(&self, pair: ObjectRef) -> Option<ObjectRef> {
        check(self, pair, Some(PAIR));
        *slot(pair, 2)
    }

    fn set_left(&mut self, pair: ObjectRef, value: Option<ObjectRef>) {
        check(self, pair, Some(PAIR));
        // SAFETY: checked: a pair, whose first slot is at offset 8.
        unsafe { self.write_ref(pair, WORD, value) }
    }

    fn set_right(&mut self, pair: ObjectRef, value: Option<ObjectRef>) {
        check(self, pair, Some(PAIR));
        // SAFETY: checked: a pair, whose second slot is at offset 16.
        unsafe { self.write_ref(pair, 2 * WORD, value) }
    }

    fn len(&self, array: ObjectRef) -> usize {
        check(self, array, Some(ARRAY));
        length(array)
    }

    fn get(&self, array: ObjectRef, index: usize) -> Option<ObjectRef> {
        let len = self.len(array);
        assert!(
            index < len,
            "index {index} out of bounds of {array:?} (len {len})"
        );
        *slot(array, 2 + index)
    }

    fn set(&mut self, array: ObjectRef, index: usize, value: Option<ObjectRef>) {
        let len = self.len(array);
        assert!(
            index < len,
            "index {index} out of bounds of {array:?} (len {len})"
        );
        // SAFETY: checked: an array with a slot at `index`.
        unsafe { self.write_ref(array, WORD * (2 + index), value) }
    }

    fn bytes(&self, blob: ObjectRef) -> Vec<u8> {
        check(self, blob, Some(BLOB));
        let len = length(blob);
        // SAFETY: checked: a blob of `len` bytes after its length word.
        unsafe { std::slice::from_raw_parts(word(blob, 2).cast::<u8>(), len) }.to_vec()
    }

    fn referent(&mut self, reference: ObjectRef) -> Option<ObjectRef> {
        let t = check(self, reference, None);
        assert!(
            matches!(t, WEAK | SOFT | PHANTOM),
            "{reference:?} is not a reference object (type tag {t})"
        );
        let referent = *slot(reference, 1);
        if let Some(object) = referent {
            self.keep_alive(object);
        }
        referent
    }

    fn tag(&self, object: ObjectRef) -> u64 {
        check(self, object, None)
    }

    fn push_root(&mut self, object: Option<ObjectRef>) -> usize {
        let stack = &mut self.roots().stack;
        stack.push(object);
        stack.len() - 1
    }

    fn root(&mut self, index: usize) -> Option<ObjectRef> {
        self.roots().stack[index]
    }

    fn set_root(&mut self, index: usize, object: Option<ObjectRef>) {
        self.roots().stack[index] = object;
    }

    fn truncate_roots(&mut self, len: usize) {
        self.roots().stack.truncate(len);
    }
}
