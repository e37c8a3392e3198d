//! The young generation of the generational collectors: an *eden* region
//! that mutators carve into TLABs, and two *survivor* regions that young
//! collections copy into, alternately.
//!
//! Between collections, live young objects are in eden and in the *from*
//! survivor region (the survivors of the last young collection). A young
//! collection copies the reachable ones into the *to* region (or promotes
//! them into the tenured generation), then empties eden and *from* and
//! swaps the two survivor regions. Every gap a region holds — the unused
//! tail of a retired TLAB — is a [filler](Header::filler), so the regions
//! can be walked object by object (by the verifier and by full collections).

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use rtmem_base::{AllocError, PoolManager, SpaceType};
use rtmem_bump::BumpRegion;

use crate::object::{Header, ObjectRef};
use crate::vm::{ObjectModel, VM};

/// The regions of the young generation (see the [module docs](self)).
pub(crate) struct Young {
    eden: BumpRegion,
    survivors: [BumpRegion; 2],
    /// Which survivor region holds the survivors of the last collection.
    from: AtomicUsize,
}

/// Writes a filler over a gap of a young region.
fn fill_gap(start: NonNull<u8>, len: usize) {
    // SAFETY: the region describes a gap it owns: `len >= 8` bytes at an
    // 8-aligned `start`, which no object uses.
    unsafe { start.cast::<u64>().write(Header::filler(len).to_bits()) };
}

impl Young {
    /// A young generation of about `bytes`: a survivor region of an eighth
    /// (at least one pool) on each side, eden for the rest (at least one
    /// pool).
    pub(crate) fn new(pools: &Arc<PoolManager>, bytes: usize) -> Result<Young, AllocError> {
        let pool = pools.pool_size();
        let survivor = (bytes / 8).max(pool);
        let eden = bytes.saturating_sub(2 * survivor).max(pool);
        // Young regions are written end to end between every two
        // collections: huge pages save a fault per 4 KiB.
        let region = |len| {
            let region = BumpRegion::new(pools.clone(), SpaceType::Object, len)?;
            pools.advise_huge_pages(region.start().as_ptr() as usize, region.capacity());
            Ok::<_, AllocError>(region.with_filler(fill_gap))
        };
        Ok(Young {
            eden: region(eden)?,
            survivors: [region(survivor)?, region(survivor)?],
            from: AtomicUsize::new(0),
        })
    }

    /// Where mutators carve their TLABs.
    #[inline(always)]
    pub(crate) fn eden(&self) -> &BumpRegion {
        &self.eden
    }

    /// The survivor region a young collection copies into.
    pub(crate) fn to_space(&self) -> &BumpRegion {
        &self.survivors[1 - self.from.load(Relaxed)]
    }

    fn survivors_from(&self) -> &BumpRegion {
        &self.survivors[self.from.load(Relaxed)]
    }

    /// Whether `addr` lies in a region a young collection empties (eden or
    /// the *from* survivor region).
    #[inline(always)]
    pub(crate) fn is_collected(&self, addr: usize) -> bool {
        self.eden.contains(addr) || self.survivors_from().contains(addr)
    }

    /// Whether `addr` lies in any young region.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.eden.contains(addr) || self.survivors.iter().any(|r| r.contains(addr))
    }

    /// Bytes handed out in eden and the *from* survivor region.
    pub(crate) fn used(&self) -> usize {
        self.eden.used() + self.survivors_from().used()
    }

    /// Objects allocated in eden and copied into the *from* region since
    /// they were last emptied (counted as TLABs retire).
    pub(crate) fn accounted_objects(&self) -> usize {
        self.eden.accounted_objects() + self.survivors_from().accounted_objects()
    }

    /// Where a young collection copied `object` (of a collected region), or
    /// `None` if it did not survive. Only meaningful between evacuation
    /// and [`flip`](Self::flip).
    pub(crate) fn forwarded(&self, object: ObjectRef) -> Option<ObjectRef> {
        // SAFETY: `object` lies in a collected region, whose memory stays
        // mapped until the flip; its header is ordinary or forwarding.
        let header = Header::from_bits(unsafe { (object.addr() as *const u64).read() });
        header.forwarded_to().and_then(ObjectRef::from_addr)
    }

    /// The byte ranges of the three regions (for clearing side tables).
    pub(crate) fn ranges(&self) -> [(usize, usize); 3] {
        let range = |r: &BumpRegion| (r.start().as_ptr() as usize, r.capacity());
        [
            range(&self.eden),
            range(&self.survivors[0]),
            range(&self.survivors[1]),
        ]
    }

    /// Calls `f(object, header, size)` for every object of eden and the
    /// *from* survivor region, skipping fillers.
    ///
    /// # Safety
    /// The world is stopped and every TLAB over the young regions retired,
    /// so that the regions hold only objects and fillers up to their use.
    pub(crate) unsafe fn walk<V: VM>(&self, mut f: impl FnMut(ObjectRef, Header, usize)) {
        for region in [&self.eden, self.survivors_from()] {
            let start = region.start().as_ptr() as usize;
            let end = start + region.used();
            let mut at = start;
            while at < end {
                // SAFETY: by the contract, `at` is the start of an object or
                // a filler in handed-out memory.
                let header = Header::from_bits(unsafe { (at as *const u64).read() });
                if let Some(len) = header.filler_len() {
                    at += len;
                    continue;
                }
                let object = ObjectRef::from_addr(at).expect("regions are not at 0");
                let size = V::ObjectModel::size(object, header);
                f(object, header, size);
                at += size;
            }
        }
    }

    /// Turns every object of eden and the *from* region for which
    /// `is_live` is false into a filler (after a full collection marked the
    /// heap), so that no dead young object keeps references to old objects
    /// the full collection freed.
    ///
    /// # Safety
    /// As for [`walk`](Self::walk); and the dead objects are unreachable.
    pub(crate) unsafe fn fill_dead<V: VM>(&self, is_live: impl Fn(ObjectRef) -> bool) {
        // SAFETY: forwarded to the caller.
        unsafe {
            self.walk::<V>(|object, _, size| {
                if !is_live(object) {
                    fill_gap(
                        NonNull::new(object.addr() as *mut u8).expect("objects are not at 0"),
                        size,
                    );
                }
            })
        };
    }

    /// After a young collection: empties eden and the *from* region and
    /// swaps the survivor regions.
    ///
    /// # Safety
    /// The world is stopped, every TLAB over eden and every copying buffer
    /// over the *to* region retired, and nothing references the emptied
    /// regions any more.
    pub(crate) unsafe fn flip(&self) {
        // SAFETY: forwarded to the caller: no one carves meanwhile.
        unsafe {
            self.eden.reset_shared();
            self.survivors_from().reset_shared();
        }
        self.from.store(1 - self.from.load(Relaxed), Relaxed);
    }
}
