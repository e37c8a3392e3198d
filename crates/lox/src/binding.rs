//! The binding of Lox to rtmem's collector: what the collector needs to
//! know about Lox objects, roots and weak tables (`rtmem_gc::VM`).
//!
//! - [`LoxModel`]: object sizes from the layouts in [`object`];
//!   Lox has no weak, soft or phantom reference objects.
//! - [`LoxScanning`]: the reference slots of objects (NaN-boxed value slots
//!   are decoded, visited and re-encoded) and the mutator's roots
//!   ([`LoxRoots`]). The globals table, the `"init"` string and every other
//!   strong reference belong to the one interpreter thread, so they are
//!   mutator roots; the binding's own state is weak tables only.
//! - [`LoxCollection`]: after marking, drops dead strings from the intern
//!   table and frees the code blocks of dead functions.

use parking_lot::Mutex;
use rtmem_gc::{
    Collection, Header, ObjectModel, ObjectRef, ReferenceKind, Scanning, SlotVisitor, VM,
};

use crate::chunk::CodeTable;
use crate::intern::StringTable;
use crate::object;
use crate::roots::LoxRoots;

/// Lox's global state as the collector sees it: the weak tables.
#[derive(Default)]
pub struct LoxVm {
    /// Interned strings, held weakly.
    pub(crate) strings: Mutex<StringTable>,
    /// Code blocks by function object, held weakly.
    pub(crate) code: CodeTable,
}

impl LoxVm {
    /// Strings in the intern table.
    pub fn interned_strings(&self) -> usize {
        self.strings.lock().len()
    }

    /// Functions whose code blocks are live in the runtime-internal space.
    pub fn code_blocks(&self) -> usize {
        self.code.len()
    }
}

/// Sizes of Lox objects.
pub struct LoxModel;

impl ObjectModel for LoxModel {
    fn size(object: ObjectRef, header: Header) -> usize {
        object::size(object, header)
    }

    fn reference(_object: ObjectRef, _header: Header) -> Option<(ReferenceKind, usize)> {
        None
    }
}

/// Reference slots of Lox objects and roots.
pub struct LoxScanning;

impl Scanning<LoxVm> for LoxScanning {
    #[inline]
    fn scan_object(object: ObjectRef, header: Header, visitor: &mut impl SlotVisitor) {
        object::scan(object, header, visitor);
    }

    fn scan_mutator_roots(roots: &mut LoxRoots, visitor: &mut impl SlotVisitor) {
        roots.scan(visitor);
    }

    fn scan_global_roots(_vm: &LoxVm, _visitor: &mut impl SlotVisitor) {
        // Every strong reference is a mutator root (see the module docs).
    }
}

/// Lox's collection callbacks.
pub struct LoxCollection;

impl Collection<LoxVm> for LoxCollection {
    fn process_weak_tables(vm: &LoxVm, survivor: &dyn Fn(ObjectRef) -> Option<ObjectRef>) {
        vm.strings.lock().sweep(survivor);
        vm.code.sweep(survivor);
    }
}

impl VM for LoxVm {
    type ObjectModel = LoxModel;
    type Scanning = LoxScanning;
    type Collection = LoxCollection;
    type MutatorRoots = LoxRoots;
}
