//! Per-space memory statistics: atomic counters and plain snapshots.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::SpaceType;

/// Live counters for every space, updated with relaxed atomics.
///
/// Allocators report what they hand out and take back (`record_alloc`,
/// `record_free`), the [`PoolManager`](crate::PoolManager) reports the memory
/// it commits for each space, and side tables (bitmaps, card tables,
/// remembered sets) report their size as metadata. Fast paths batch their
/// reports (a TLAB reports when it is retired), so a snapshot taken while
/// allocators are active may lag by at most one buffer per thread.
#[derive(Debug, Default)]
pub struct MemStats {
    spaces: [SpaceCounters; SpaceType::COUNT],
    object_header_bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct SpaceCounters {
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
    objects_allocated: AtomicU64,
    objects_freed: AtomicU64,
    committed: AtomicU64,
    peak_committed: AtomicU64,
    metadata: AtomicU64,
}

impl MemStats {
    /// All counters at zero.
    pub fn new() -> MemStats {
        MemStats::default()
    }

    /// Records `objects` allocations totalling `bytes` in `space`.
    #[inline]
    pub fn record_alloc(&self, space: SpaceType, bytes: usize, objects: usize) {
        let c = &self.spaces[space.index()];
        c.bytes_allocated.fetch_add(bytes as u64, Relaxed);
        c.objects_allocated.fetch_add(objects as u64, Relaxed);
    }

    /// Records `objects` frees totalling `bytes` in `space`.
    #[inline]
    pub fn record_free(&self, space: SpaceType, bytes: usize, objects: usize) {
        let c = &self.spaces[space.index()];
        c.bytes_freed.fetch_add(bytes as u64, Relaxed);
        c.objects_freed.fetch_add(objects as u64, Relaxed);
    }

    /// Records that `bytes` more are committed for `space`, updating the peak.
    pub fn record_commit(&self, space: SpaceType, bytes: usize) {
        let c = &self.spaces[space.index()];
        let now = c.committed.fetch_add(bytes as u64, Relaxed) + bytes as u64;
        c.peak_committed.fetch_max(now, Relaxed);
    }

    /// Records that `bytes` of `space` were decommitted or given back.
    pub fn record_decommit(&self, space: SpaceType, bytes: usize) {
        let c = &self.spaces[space.index()];
        let before = c.committed.fetch_sub(bytes as u64, Relaxed);
        debug_assert!(
            before >= bytes as u64,
            "{space}: decommitted more than committed"
        );
    }

    /// Records `bytes` of side metadata (bitmaps, card tables, ...) kept for `space`.
    pub fn record_metadata(&self, space: SpaceType, bytes: usize) {
        self.spaces[space.index()]
            .metadata
            .fetch_add(bytes as u64, Relaxed);
    }

    /// Records that `bytes` of side metadata for `space` were released.
    pub fn release_metadata(&self, space: SpaceType, bytes: usize) {
        let before = self.spaces[space.index()]
            .metadata
            .fetch_sub(bytes as u64, Relaxed);
        debug_assert!(
            before >= bytes as u64,
            "{space}: released more metadata than recorded"
        );
    }

    /// The counters of one space.
    pub fn space(&self, space: SpaceType) -> SpaceStats {
        let c = &self.spaces[space.index()];
        SpaceStats {
            space,
            bytes_allocated: c.bytes_allocated.load(Relaxed),
            bytes_freed: c.bytes_freed.load(Relaxed),
            objects_allocated: c.objects_allocated.load(Relaxed),
            objects_freed: c.objects_freed.load(Relaxed),
            committed: c.committed.load(Relaxed),
            peak_committed: c.peak_committed.load(Relaxed),
            metadata: c.metadata.load(Relaxed),
            capacity: 0,
            limit: 0,
            growths: 0,
        }
    }

    /// Records the bytes of header every managed object carries (set by
    /// the collected heap; 0 while there is none).
    pub fn set_object_header_bytes(&self, bytes: usize) {
        self.object_header_bytes.store(bytes as u64, Relaxed);
    }

    /// A plain copy of every counter.
    pub fn snapshot(&self) -> MemStatsSnapshot {
        MemStatsSnapshot {
            spaces: SpaceType::ALL.into_iter().map(|s| self.space(s)).collect(),
            pool_cache_bytes: 0,
            pool_table_bytes: 0,
            object_header_bytes: self.object_header_bytes.load(Relaxed),
        }
    }
}

/// The counters of one space at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceStats {
    /// The space.
    pub space: SpaceType,
    /// Bytes handed out since the start.
    pub bytes_allocated: u64,
    /// Bytes taken back since the start.
    pub bytes_freed: u64,
    /// Objects (allocations) handed out since the start.
    pub objects_allocated: u64,
    /// Objects taken back since the start.
    pub objects_freed: u64,
    /// Bytes committed (backed by memory) now.
    pub committed: u64,
    /// The most bytes ever committed at once.
    pub peak_committed: u64,
    /// Bytes of side metadata (bitmaps, card tables, remembered sets) now.
    pub metadata: u64,
    /// The bytes of pools the space may hold now (filled in by the pool manager).
    pub capacity: u64,
    /// The most the space may ever hold (filled in by the pool manager).
    pub limit: u64,
    /// How many times the capacity grew (filled in by the pool manager).
    pub growths: u64,
}

impl SpaceStats {
    /// Bytes allocated and not yet freed.
    pub fn live_bytes(&self) -> u64 {
        self.bytes_allocated.saturating_sub(self.bytes_freed)
    }

    /// Objects allocated and not yet freed.
    pub fn live_objects(&self) -> u64 {
        self.objects_allocated.saturating_sub(self.objects_freed)
    }

    fn is_idle(&self) -> bool {
        self.bytes_allocated == 0 && self.peak_committed == 0 && self.metadata == 0
    }
}

/// A snapshot of [`MemStats`] for every space, plus the pool manager's own memory.
///
/// Serializes to JSON with serde; `Display` prints a table of the spaces that
/// saw any activity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemStatsSnapshot {
    /// One entry per space, in [`SpaceType::ALL`] order.
    pub spaces: Vec<SpaceStats>,
    /// Bytes of freed pools kept committed for quick reuse (owned by no space).
    pub pool_cache_bytes: u64,
    /// Bytes of the pool manager's own address-to-pool table in use.
    pub pool_table_bytes: u64,
    /// Bytes of header every managed object carries (0 without a heap).
    pub object_header_bytes: u64,
}

impl MemStatsSnapshot {
    /// The entry of one space.
    pub fn space(&self, space: SpaceType) -> &SpaceStats {
        &self.spaces[space.index()]
    }

    /// The sum over every space.
    pub fn total(&self) -> SpaceStats {
        let mut t = SpaceStats {
            space: SpaceType::Object,
            bytes_allocated: 0,
            bytes_freed: 0,
            objects_allocated: 0,
            objects_freed: 0,
            committed: 0,
            peak_committed: 0,
            metadata: 0,
            capacity: 0,
            limit: 0,
            growths: 0,
        };
        for s in &self.spaces {
            t.bytes_allocated += s.bytes_allocated;
            t.bytes_freed += s.bytes_freed;
            t.objects_allocated += s.objects_allocated;
            t.objects_freed += s.objects_freed;
            t.committed += s.committed;
            t.peak_committed += s.peak_committed;
            t.metadata += s.metadata;
            t.capacity = t.capacity.saturating_add(s.capacity);
            t.limit = t.limit.saturating_add(s.limit);
            t.growths += s.growths;
        }
        t
    }

    /// Side-metadata bytes per committed byte of the object spaces
    /// (object, non-moving, humongous): mark bitmap, card table. 0 when
    /// nothing is committed there.
    pub fn heap_metadata_per_byte(&self) -> f64 {
        let (metadata, committed) = SpaceType::MANAGED.iter().fold((0, 0), |(m, c), &s| {
            let s = self.space(s);
            (m + s.metadata, c + s.committed)
        });
        if committed == 0 {
            0.0
        } else {
            metadata as f64 / committed as f64
        }
    }

    /// The snapshot as a JSON string.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot of integers always serializes")
    }
}

impl fmt::Display for MemStatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "space",
            "allocated",
            "freed",
            "live",
            "objects",
            "live objects",
            "committed",
            "peak",
            "metadata",
            "capacity",
            "limit"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, s: &SpaceStats| {
            writeln!(
                f,
                "{:<18} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
                name,
                format_bytes(s.bytes_allocated),
                format_bytes(s.bytes_freed),
                format_bytes(s.live_bytes()),
                s.objects_allocated,
                s.live_objects(),
                format_bytes(s.committed),
                format_bytes(s.peak_committed),
                format_bytes(s.metadata),
                size_or_dash(s.capacity),
                size_or_dash(s.limit),
            )
        };
        for s in self.spaces.iter().filter(|s| !s.is_idle()) {
            row(f, s.space.name(), s)?;
        }
        row(f, "total", &self.total())?;
        write!(
            f,
            "pool cache {}, pool table {}",
            format_bytes(self.pool_cache_bytes),
            format_bytes(self.pool_table_bytes)
        )?;
        if self.object_header_bytes > 0 {
            write!(
                f,
                "\nobject header {} B per object; heap metadata {:.4} B per committed heap byte",
                self.object_header_bytes,
                self.heap_metadata_per_byte()
            )?;
        }
        Ok(())
    }
}

/// What a sweep freed: every allocator that frees individual objects
/// (run-of-slots, free list, large objects) reports its sweeps with this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Bytes freed (as counted in `MemStats`: usable block or slot sizes).
    pub bytes: usize,
    /// Objects freed.
    pub objects: usize,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Swept) {
        self.bytes += other.bytes;
        self.objects += other.objects;
    }
}

/// A size, or `-` for "not known" (0) and "unlimited" (beyond any address space).
fn size_or_dash(bytes: u64) -> String {
    if bytes == 0 || bytes >= 1 << 60 {
        "-".to_owned()
    } else {
        format_bytes(bytes)
    }
}

/// Formats a byte count with a binary unit: `512 B`, `4.0 KiB`, `1.5 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_snapshot_and_render() {
        let stats = MemStats::new();
        stats.record_alloc(SpaceType::Object, 4096, 2);
        stats.record_free(SpaceType::Object, 1024, 1);
        stats.record_commit(SpaceType::Object, 1 << 20);
        stats.record_commit(SpaceType::Object, 1 << 20);
        stats.record_decommit(SpaceType::Object, 1 << 20);
        stats.record_metadata(SpaceType::Object, 100);
        let snap = stats.snapshot();
        let o = snap.space(SpaceType::Object);
        assert_eq!(o.live_bytes(), 3072);
        assert_eq!(o.live_objects(), 1);
        assert_eq!(o.committed, 1 << 20);
        assert_eq!(o.peak_committed, 2 << 20);
        assert_eq!(snap.total().metadata, 100);
        let table = snap.to_string();
        assert!(
            table.contains("object") && table.contains("2.0 MiB"),
            "{table}"
        );
        assert!(
            !table.contains("humongous"),
            "idle spaces are not printed: {table}"
        );
        let json: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
        assert_eq!(json["spaces"][SpaceType::Object.index()]["space"], "object");
        assert_eq!(
            json["spaces"][SpaceType::Object.index()]["bytes_freed"],
            1024
        );
    }

    #[test]
    fn byte_formatting() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
