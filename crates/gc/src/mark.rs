//! Parallel marking: the transitive closure over the mark bitmap, on the
//! work-stealing loop of [`parallel`](crate::parallel). A worker scans what
//! it pops: every child it is first to mark (the bitmap's atomic `mark`)
//! goes on its private stack, so each object is scanned exactly once.
//!
//! A [`MarkScope`] says what a trace marks: every object (full
//! collections), or only the objects outside the young generation (the
//! concurrent cycles of `gen-concurrent`, which leave young objects to young
//! collections and count them live).

use crate::bitmap::MarkBitmap;
use crate::object::{Header, ObjectRef};
use crate::parallel::{Scanner, drain};
use crate::vm::{ObjectModel, ReferenceKind, Scanning, SlotVisitor, VM};
use crate::young::Young;

/// What a trace marks: every object, or only those outside the young
/// generation.
#[derive(Clone, Copy)]
pub(crate) struct MarkScope<'a> {
    pub(crate) bitmap: &'a MarkBitmap,
    /// Objects in these regions are neither marked nor traced through; they
    /// count as live.
    young: Option<&'a Young>,
}

impl<'a> MarkScope<'a> {
    /// Marks every object.
    pub(crate) fn all(bitmap: &'a MarkBitmap) -> MarkScope<'a> {
        MarkScope {
            bitmap,
            young: None,
        }
    }

    /// Marks only objects outside `young`.
    pub(crate) fn old_only(bitmap: &'a MarkBitmap, young: &'a Young) -> MarkScope<'a> {
        MarkScope {
            bitmap,
            young: Some(young),
        }
    }

    /// Marks the object at `addr` unless it is out of scope; true if this
    /// call marked it (the caller then traces it).
    #[inline(always)]
    pub(crate) fn mark(&self, addr: usize) -> bool {
        if let Some(young) = self.young
            && young.contains(addr)
        {
            return false;
        }
        self.bitmap.mark(addr)
    }

    /// Whether the object at `addr` is live as far as this trace knows:
    /// marked, or out of scope.
    #[inline]
    pub(crate) fn is_live(&self, addr: usize) -> bool {
        self.young.is_some_and(|y| y.contains(addr)) || self.bitmap.is_marked(addr)
    }
}

/// A reference object found while marking, with its referent slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Discovered {
    /// The reference object.
    pub(crate) object: ObjectRef,
    pub(crate) kind: ReferenceKind,
    /// The referent slot's offset in the object.
    pub(crate) offset: usize,
}

impl Discovered {
    fn slot(&self) -> *mut Option<ObjectRef> {
        (self.object.addr() + self.offset) as *mut Option<ObjectRef>
    }

    /// The referent.
    pub(crate) fn referent(&self) -> Option<ObjectRef> {
        // SAFETY: the slot is a word inside a live (marked) reference
        // object; the world is stopped and reference processing runs on one
        // thread, so nothing writes it meanwhile.
        unsafe { self.slot().read() }
    }

    /// Clears the referent.
    pub(crate) fn clear(&self) {
        // SAFETY: as for `referent`; the collector is the only writer.
        unsafe { self.slot().write(None) }
    }
}

/// What a trace found.
#[derive(Default)]
pub(crate) struct Traced {
    /// Bytes of the objects marked (their sizes, headers included).
    pub(crate) bytes: usize,
    /// Objects marked.
    pub(crate) objects: usize,
    /// Reference objects among them.
    pub(crate) discovered: Vec<Discovered>,
}

impl Traced {
    /// Adds `other`'s counts and returns its discovered references.
    pub(crate) fn absorb(&mut self, other: Traced) -> Vec<Discovered> {
        self.bytes += other.bytes;
        self.objects += other.objects;
        other.discovered
    }

    pub(crate) fn merge(&mut self, other: Traced) {
        let discovered = self.absorb(other);
        self.discovered.extend(discovered);
    }
}

/// Marks roots: each not yet marked is marked and collected for tracing.
pub(crate) struct RootMarker<'a> {
    pub(crate) scope: MarkScope<'a>,
    pub(crate) grey: Vec<ObjectRef>,
}

impl<'a> RootMarker<'a> {
    /// A marker with nothing collected yet.
    pub(crate) fn new(scope: MarkScope<'a>) -> RootMarker<'a> {
        RootMarker {
            scope,
            grey: Vec::new(),
        }
    }

    /// Marks `object`; if it was not marked yet (and is in scope), collects
    /// it for tracing and returns true.
    #[inline]
    pub(crate) fn mark(&mut self, object: ObjectRef) -> bool {
        let first = self.scope.mark(object.addr());
        if first {
            self.grey.push(object);
        }
        first
    }
}

impl SlotVisitor for RootMarker<'_> {
    #[inline]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot {
            self.mark(object);
        }
    }
}

/// Marks the children of a scanned object onto the worker's stack.
struct ChildMarker<'a> {
    scope: MarkScope<'a>,
    stack: &'a mut Vec<ObjectRef>,
}

impl SlotVisitor for ChildMarker<'_> {
    #[inline(always)]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot
            && self.scope.mark(object.addr())
        {
            self.stack.push(object);
        }
    }
}

/// One marking worker: what it marked.
pub(crate) struct Marker<'a, V> {
    scope: MarkScope<'a>,
    traced: Traced,
    vm: std::marker::PhantomData<fn() -> V>,
}

impl<V: VM> Scanner for Marker<'_, V> {
    /// Scans one marked object.
    ///
    /// Concurrent marking scans objects mutators may be writing to: the
    /// binding's `scan_object` then only reads the slots (the collector
    /// never changes a slot while marking, so a binding that re-encodes a
    /// slot only when the visitor changed it writes nothing).
    #[inline]
    fn scan(&mut self, object: ObjectRef, stack: &mut Vec<ObjectRef>) {
        // SAFETY: a marked object is an allocated object whose header the
        // mutator wrote before the world stopped.
        let header = Header::from_bits(unsafe { (object.addr() as *const u64).read() });
        self.traced.bytes += V::ObjectModel::size(object, header);
        self.traced.objects += 1;
        if let Some((kind, offset)) = V::ObjectModel::reference(object, header) {
            self.traced.discovered.push(Discovered {
                object,
                kind,
                offset,
            });
        }
        V::Scanning::scan_object(
            object,
            header,
            &mut ChildMarker {
                scope: self.scope,
                stack,
            },
        );
    }
}

impl<'a, V: VM> Marker<'a, V> {
    /// A marker that has marked nothing yet.
    pub(crate) fn new(scope: MarkScope<'a>) -> Marker<'a, V> {
        Marker {
            scope,
            traced: Traced::default(),
            vm: std::marker::PhantomData,
        }
    }

    /// Scans objects from `stack` (marked, not yet scanned) on this thread
    /// until it is empty — then returns true — or until `stop()` answers
    /// true, which it is asked every few hundred objects.
    pub(crate) fn trace_until(
        &mut self,
        stack: &mut Vec<ObjectRef>,
        stop: impl Fn() -> bool,
    ) -> bool {
        const CHECK_EVERY: u32 = 256;
        let mut since_check = 0;
        while let Some(object) = stack.pop() {
            self.scan(object, stack);
            since_check += 1;
            if since_check == CHECK_EVERY {
                since_check = 0;
                if stop() {
                    return stack.is_empty();
                }
            }
        }
        true
    }

    /// What it marked.
    pub(crate) fn into_traced(self) -> Traced {
        self.traced
    }
}

/// Marks everything in `scope` reachable from `grey` (objects already
/// marked, not yet scanned) on `workers` threads and returns what was
/// marked.
pub(crate) fn trace<V: VM>(scope: MarkScope<'_>, workers: usize, grey: Vec<ObjectRef>) -> Traced {
    let mut markers: Vec<Marker<'_, V>> = (0..workers).map(|_| Marker::new(scope)).collect();
    drain(&mut markers, grey);
    let mut traced = Traced::default();
    for marker in markers {
        traced.merge(marker.traced);
    }
    traced
}
