//! Parallel marking: the transitive closure over the mark bitmap, on the
//! work-stealing loop of [`parallel`](crate::parallel). A worker scans what
//! it pops: every child it is first to mark (the bitmap's atomic `mark`)
//! goes on its private stack, so each object is scanned exactly once.

use crate::bitmap::MarkBitmap;
use crate::object::{Header, ObjectRef};
use crate::parallel::{Scanner, drain};
use crate::vm::{ObjectModel, ReferenceKind, Scanning, SlotVisitor, VM};

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

    fn merge(&mut self, other: Traced) {
        let discovered = self.absorb(other);
        self.discovered.extend(discovered);
    }
}

/// Marks roots: each not yet marked is marked and collected for tracing.
pub(crate) struct RootMarker<'a> {
    pub(crate) bitmap: &'a MarkBitmap,
    pub(crate) grey: Vec<ObjectRef>,
}

impl<'a> RootMarker<'a> {
    /// A marker with nothing collected yet.
    pub(crate) fn new(bitmap: &'a MarkBitmap) -> RootMarker<'a> {
        RootMarker {
            bitmap,
            grey: Vec::new(),
        }
    }

    /// Marks `object`; if it was not marked yet, collects it for tracing
    /// and returns true.
    #[inline]
    pub(crate) fn mark(&mut self, object: ObjectRef) -> bool {
        let first = self.bitmap.mark(object.addr());
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
    bitmap: &'a MarkBitmap,
    stack: &'a mut Vec<ObjectRef>,
}

impl SlotVisitor for ChildMarker<'_> {
    #[inline(always)]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot
            && self.bitmap.mark(object.addr())
        {
            self.stack.push(object);
        }
    }
}

/// One marking worker: what it marked.
struct Marker<'a, V> {
    bitmap: &'a MarkBitmap,
    traced: Traced,
    vm: std::marker::PhantomData<fn() -> V>,
}

impl<V: VM> Scanner for Marker<'_, V> {
    /// Scans one marked object.
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
                bitmap: self.bitmap,
                stack,
            },
        );
    }
}

/// Marks everything reachable from `grey` (objects already marked, not yet
/// scanned) on `workers` threads and returns what was marked.
pub(crate) fn trace<V: VM>(bitmap: &MarkBitmap, workers: usize, grey: Vec<ObjectRef>) -> Traced {
    let mut markers: Vec<Marker<'_, V>> = (0..workers)
        .map(|_| Marker {
            bitmap,
            traced: Traced::default(),
            vm: std::marker::PhantomData,
        })
        .collect();
    drain(&mut markers, grey);
    let mut traced = Traced::default();
    for marker in markers {
        traced.merge(marker.traced);
    }
    traced
}
