//! The VM interface: what a runtime tells the collector about its objects,
//! its roots and its weak tables.
//!
//! A runtime implements [`VM`] once (its *binding*), on a type that holds
//! its global state (class tables, the interned-string table, ...). The
//! binding's associated types split the interface the way MMTk's
//! `VMBinding` does:
//!
//! - [`ObjectModel`]: the size of an object and whether it is a reference
//!   object (weak, soft, phantom) — read from the runtime's type word in the
//!   [header](crate::object::Header);
//! - [`Scanning`]: every reference *slot* of an object, of a mutator's
//!   frames and handles, and of the runtime's globals, visited as
//!   `&mut Option<ObjectRef>` so that a moving collector can update it;
//! - [`Collection`]: callbacks at the end of marking — weak tables.
//!
//! Type descriptors belong to the runtime: rtmem stores the 56-bit type word
//! and never interprets it, so several languages can share one heap through
//! one binding whose type words point at descriptors of either.
//!
//! The collector calls these functions only for objects it knows to be
//! allocated (a header written by [`Mutator::alloc`](crate::Mutator::alloc)),
//! from any thread, possibly from several threads at once for different
//! objects (parallel marking).

use crate::object::{Header, ObjectRef};

/// A runtime's binding to the collector.
pub trait VM: Send + Sync + Sized + 'static {
    /// Sizes and reference kinds of objects.
    type ObjectModel: ObjectModel;
    /// Reference slots of objects, mutators and globals.
    type Scanning: Scanning<Self>;
    /// Callbacks around a collection.
    type Collection: Collection<Self>;
    /// One mutator's roots: its frames, virtual registers and handles.
    /// Owned by the [`Mutator`](crate::Mutator); reached by the collector
    /// only while the world is stopped.
    type MutatorRoots: Send;
}

/// The kinds of reference objects. Ordinary references are strong; a
/// reference object's *referent* slot holds one of these weaker kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// Cleared as soon as the referent is otherwise unreachable.
    Weak,
    /// Kept while the heap is not under pressure; cleared by a collection
    /// for allocation failure (like Java's `SoftReference`).
    Soft,
    /// Cleared and handed back to the runtime after the referent died and
    /// was finalized (for post-mortem cleanup; the referent is never
    /// reachable through it).
    Phantom,
}

/// How a runtime's objects are laid out, read from their headers.
pub trait ObjectModel {
    /// The object's size in bytes, header included (at least
    /// [`HEADER_BYTES`](crate::object::HEADER_BYTES)). Must be the size the
    /// object was allocated with.
    fn size(object: ObjectRef, header: Header) -> usize;

    /// `Some((kind, offset))` if `object` is a reference object: its
    /// referent slot is the word at `object.addr() + offset`. That slot is
    /// *not* visited by [`Scanning::scan_object`]: the collector treats it
    /// according to `kind`.
    fn reference(object: ObjectRef, header: Header) -> Option<(ReferenceKind, usize)>;
}

/// Receives reference slots; implemented by the collector.
pub trait SlotVisitor {
    /// One reference slot (null is `None`). A moving collector may store the
    /// object's new address into it.
    ///
    /// The collector is done with the slot when `visit` returns, so the slot
    /// may be a temporary: a runtime whose values are tagged or NaN-boxed
    /// decodes the reference into an `Option<ObjectRef>`, visits that, and
    /// encodes the result back.
    fn visit(&mut self, slot: &mut Option<ObjectRef>);
}

/// Where a runtime's references are.
pub trait Scanning<V: VM> {
    /// Visits every reference slot of `object` (whose header is `header`),
    /// except a reference object's referent slot.
    fn scan_object(object: ObjectRef, header: Header, visitor: &mut impl SlotVisitor);

    /// Visits every root slot of one mutator: frames, registers, handles.
    fn scan_mutator_roots(roots: &mut V::MutatorRoots, visitor: &mut impl SlotVisitor);

    /// Visits the runtime's global roots: class tables, statics, strongly
    /// held interned strings.
    fn scan_global_roots(vm: &V, visitor: &mut impl SlotVisitor);
}

/// Callbacks the collector makes during a collection.
pub trait Collection<V: VM> {
    /// After marking, before memory is reclaimed: drop the entries of weak
    /// tables (an interned-string table is the classic case) whose key died,
    /// and update the others. `survivor(object)` is the object's address
    /// after the collection, or `None` if it died.
    fn process_weak_tables(vm: &V, survivor: &dyn Fn(ObjectRef) -> Option<ObjectRef>);
}
