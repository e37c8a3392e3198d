//! The heap verifier: every reference of every live object, and every root,
//! points to the start of an allocated object in a heap space.
//!
//! Runs with the world stopped: before and after each collection when the
//! profile's `verify` is on, or on demand ([`Mutator::verify`],
//! [`Heap::verify`](crate::Heap::verify)). It gathers the start of every
//! allocated block of the heap's allocators, then checks each object's
//! header (not forwarded, its size within its block) and each reference
//! slot — a reference object's referent included — against that set.
//!
//! [`Mutator::verify`]: crate::Mutator::verify

use std::fmt;
use std::ptr::NonNull;

use rtmem_runslots::SweepSet;

use crate::heap::HeapInner;
use crate::mutator::MutatorState;
use crate::object::{Header, ObjectRef};
use crate::safepoint::StoppedWorld;
use crate::stats::{GcCause, PhaseTimer};
use crate::vm::{ObjectModel, Scanning, SlotVisitor, VM};
use crate::young::Young;

/// What a successful verification checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: usize,
    /// Non-null reference slots checked (in objects and roots).
    pub references: usize,
    /// Non-null root slots among them.
    pub roots: usize,
}

/// Where a bad reference was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// In the object at this address, in the slot at this byte offset.
    Object {
        /// The object holding the reference.
        object: usize,
        /// The slot's offset in it.
        offset: usize,
    },
    /// A root of the mutator with this registration index.
    MutatorRoot(usize),
    /// A global root of the runtime.
    GlobalRoot,
    /// The finalization or phantom queue.
    Queue,
}

/// The first fault the verifier found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A reference that is not the start of an allocated heap object.
    BadReference {
        /// Where it was found.
        holder: Holder,
        /// The reference's value.
        value: usize,
    },
    /// An object whose header is a forwarding header outside a collection.
    Forwarded {
        /// The object.
        object: usize,
    },
    /// An object whose size (from the runtime's object model) exceeds the
    /// block it was allocated in.
    BadSize {
        /// The object.
        object: usize,
        /// Its size per the object model.
        size: usize,
        /// The block's usable size.
        block: usize,
    },
    /// An old object that references a young one while none of its cards
    /// is dirty: the next young collection would not find the reference
    /// (a missing post-write barrier).
    CleanCard {
        /// The old object.
        object: usize,
        /// The young object it references.
        young: usize,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VerifyError::BadReference { holder, value } => {
                write!(f, "reference {value:#x} ")?;
                match holder {
                    Holder::Object { object, offset } => {
                        write!(f, "in slot +{offset} of object {object:#x}")?
                    }
                    Holder::MutatorRoot(i) => write!(f, "in a root of mutator {i}")?,
                    Holder::GlobalRoot => write!(f, "in a global root")?,
                    Holder::Queue => write!(f, "in the finalization queues")?,
                }
                write!(f, " is not the start of an allocated heap object")
            }
            VerifyError::Forwarded { object } => {
                write!(
                    f,
                    "object {object:#x} has a forwarding header outside a collection"
                )
            }
            VerifyError::BadSize {
                object,
                size,
                block,
            } => write!(
                f,
                "object {object:#x} claims {size} bytes but its block holds {block}"
            ),
            VerifyError::CleanCard { object, young } => write!(
                f,
                "old object {object:#x} references young object {young:#x} but no card \
                 of it is dirty (a store without the write barrier?)"
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks slots against the sorted object starts; keeps the first fault.
struct Checker<'a> {
    starts: &'a [usize],
    holder: Holder,
    checked: usize,
    error: Option<VerifyError>,
    /// The young generation, if any, and the first young object the
    /// object being checked references.
    young: Option<&'a Young>,
    young_ref: Option<usize>,
}

impl Checker<'_> {
    fn check(&mut self, value: Option<ObjectRef>) {
        let Some(object) = value else { return };
        self.checked += 1;
        if self.young.is_some_and(|y| y.contains(object.addr())) {
            self.young_ref.get_or_insert(object.addr());
        }
        if self.error.is_none() && self.starts.binary_search(&object.addr()).is_err() {
            self.error = Some(VerifyError::BadReference {
                holder: self.holder,
                value: object.addr(),
            });
        }
    }
}

impl SlotVisitor for Checker<'_> {
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Holder::Object { object, offset } = &mut self.holder {
            *offset = (slot as *mut Option<ObjectRef> as usize).wrapping_sub(*object);
        }
        self.check(*slot);
    }
}

impl<V: VM> HeapInner<V> {
    /// Verifies the heap `when` ("before" or "after") collection `index` if
    /// the configuration asks for it, as a phase of `timer`.
    ///
    /// # Panics
    /// If the heap is broken: the message names the collection, its cause
    /// and the [`VerifyError`].
    pub(crate) fn verify_if_asked(
        &self,
        world: &mut StoppedWorld<'_, MutatorState<V>>,
        timer: &mut PhaseTimer,
        index: u64,
        cause: GcCause,
        when: &'static str,
    ) {
        if !self.config.verify {
            return;
        }
        timer.phase(if when == "before" {
            "verify-before"
        } else {
            "verify-after"
        });
        if let Err(e) = self.verify_stopped(world) {
            panic!("heap verification {when} collection {index} ({cause}) failed: {e}");
        }
    }

    /// Verifies the heap; the world is stopped.
    pub(crate) fn verify_stopped(
        &self,
        world: &mut StoppedWorld<'_, MutatorState<V>>,
    ) -> Result<VerifyReport, VerifyError> {
        let mut blocks = Vec::new();
        let mut add =
            |start: NonNull<u8>, size: usize| blocks.push((start.as_ptr() as usize, size));
        // Unmarked objects in runs awaiting a concurrent sweep are garbage
        // (their references may dangle): not objects any more.
        let mut walk_blocks = |unswept: &[SweepSet]| {
            for (i, set) in self.block_sets().into_iter().enumerate() {
                set.small().walk(|start, size| {
                    let addr = start.as_ptr() as usize;
                    let awaiting_sweep = unswept.get(i).is_some_and(|s| s.contains(addr));
                    if !awaiting_sweep || self.bitmap.is_marked(addr) {
                        add(start, size);
                    }
                });
                set.medium().walk(&mut add);
            }
        };
        match &self.concurrent {
            Some(concurrent) => concurrent.with_unswept(walk_blocks),
            None => walk_blocks(&[]),
        }
        self.spaces.humongous().large().walk(&mut add);
        if let Some(young) = &self.young {
            world.for_each_mutator(|state| state.tlab.retire(young.eden()));
            // SAFETY: the world is stopped and every TLAB was just retired.
            unsafe {
                young.walk::<V>(|object, _, size| {
                    blocks.push((object.addr(), size));
                })
            };
        }
        blocks.sort_unstable();
        let starts: Vec<usize> = blocks.iter().map(|&(start, _)| start).collect();
        let mut report = VerifyReport::default();
        let mut checker = Checker {
            starts: &starts,
            holder: Holder::GlobalRoot,
            checked: 0,
            error: None,
            young: self.young.as_ref(),
            young_ref: None,
        };
        for &(start, block) in &blocks {
            // SAFETY: an allocated block of the heap holds an object whose
            // header was written at allocation.
            let header = Header::from_bits(unsafe { (start as *const u64).read() });
            let object = ObjectRef::from_addr(start).expect("blocks are not at 0");
            if header.forwarded_to().is_some() {
                return Err(VerifyError::Forwarded { object: start });
            }
            let size = V::ObjectModel::size(object, header);
            if size > block {
                return Err(VerifyError::BadSize {
                    object: start,
                    size,
                    block,
                });
            }
            checker.holder = Holder::Object {
                object: start,
                offset: 0,
            };
            checker.young_ref = None;
            V::Scanning::scan_object(object, header, &mut checker);
            if let Some((_, offset)) = V::ObjectModel::reference(object, header) {
                // SAFETY: the referent slot is a word inside the object.
                let slot = unsafe { &mut *((start + offset) as *mut Option<ObjectRef>) };
                checker.visit(slot);
            }
            // The remembered set: an old object referencing a young one
            // must be on a dirty card.
            if let (Some(young), Some(cards)) = (checker.young_ref, &self.cards)
                && !checker.young.is_some_and(|y| y.contains(start))
                && !cards.any_dirty(start, start + size)
            {
                return Err(VerifyError::CleanCard {
                    object: start,
                    young,
                });
            }
            report.objects += 1;
        }
        let in_objects = checker.checked;
        let mut index = 0;
        world.for_each_mutator(|state| {
            checker.holder = Holder::MutatorRoot(index);
            V::Scanning::scan_mutator_roots(&mut state.roots, &mut checker);
            index += 1;
        });
        checker.holder = Holder::GlobalRoot;
        V::Scanning::scan_global_roots(&self.vm, &mut checker);
        checker.holder = Holder::Queue;
        {
            let queues = self.queues.lock();
            for &o in queues.to_finalize.iter().chain(&queues.phantoms) {
                checker.check(Some(o));
            }
        }
        if let Some(error) = checker.error {
            return Err(error);
        }
        report.references = checker.checked;
        report.roots = checker.checked - in_objects;
        Ok(report)
    }
}
