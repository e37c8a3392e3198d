//! Reading a HotSpot unified GC log (`-Xlog:gc*:file=...`, JDK 17) for the
//! figures `compare-jvm` reports: collections, pauses, allocation stalls.
//!
//! The lines that count, after their `[uptime][level][tags]` decorations:
//! - a pause of G1 or Parallel, one line per pause with its duration last:
//!   `GC(3) Pause Young (Normal) (G1 Evacuation Pause) 43M->29M(380M) 6.414ms`,
//!   `GC(6) Pause Remark 44M->22M(64M) 0.215ms`,
//!   `GC(2) Pause Full (Ergonomics) 29M->5M(38M) 21.341ms`;
//! - a pause of ZGC, three per cycle (`gc,phases`):
//!   `GC(0) Pause Mark Start 0.010ms`, `Pause Mark End`, `Pause Relocate Start`;
//! - a ZGC allocation stall, where a thread waited for memory, which is a
//!   pause of that thread although not of the collector:
//!   `Allocation Stall (main) 42.596ms`.
//!
//! The start lines of pauses (`gc,start`, no duration) and the phases inside
//! a pause (`Marking Phase 11.291ms`) are not pauses of their own. The
//! collections are the distinct `GC(n)` ids that paused.

use std::collections::BTreeSet;

/// The figures of one GC log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcLog {
    /// Collections that paused the program (distinct `GC(n)` ids).
    pub collections: u64,
    /// The longest pause, ms.
    pub pause_max_ms: f64,
    /// All pauses together, ms.
    pub pause_total_ms: f64,
    /// The longest allocation stall (ZGC), ms; 0 if none.
    pub stall_max_ms: f64,
}

/// The figures of the log `text`.
pub fn parse(text: &str) -> GcLog {
    let mut log = GcLog::default();
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        match event(message(line)) {
            Some(Event::Pause { id, ms }) => {
                ids.insert(id);
                log.pause_max_ms = log.pause_max_ms.max(ms);
                log.pause_total_ms += ms;
            }
            Some(Event::Stall { ms }) => log.stall_max_ms = log.stall_max_ms.max(ms),
            None => {}
        }
    }
    log.collections = ids.len() as u64;
    log
}

/// A line of the log that counts.
#[derive(Debug, PartialEq)]
enum Event {
    /// A pause of collection `id`.
    Pause { id: u64, ms: f64 },
    /// An allocation stall.
    Stall { ms: f64 },
}

/// A line without its leading `[...]` decorations.
fn message(line: &str) -> &str {
    let mut rest = line.trim_start();
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => rest = inner[end + 1..].trim_start(),
            None => break,
        }
    }
    rest
}

fn event(message: &str) -> Option<Event> {
    if message.starts_with("Allocation Stall (") {
        return Some(Event::Stall {
            ms: trailing_ms(message)?,
        });
    }
    let rest = message.strip_prefix("GC(")?;
    let (id, rest) = rest.split_once(')')?;
    let id = id.parse().ok()?;
    if !rest.trim_start().starts_with("Pause ") {
        return None;
    }
    Some(Event::Pause {
        id,
        ms: trailing_ms(rest)?,
    })
}

/// The duration at the end of a message, as in `... 6.414ms`.
fn trailing_ms(message: &str) -> Option<f64> {
    message
        .trim_end()
        .rsplit(' ')
        .next()?
        .strip_suffix("ms")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines from real JDK 17.0.15 runs of benches/jvm/BinaryTrees.java with
    // `-Xlog:gc*`, trimmed to a few per collector.
    const G1: &str = "\
[0.003s][info][gc] Using G1
[0.066s][info][gc,start    ] GC(0) Pause Young (Normal) (G1 Evacuation Pause)
[0.066s][info][gc,task     ] GC(0) Using 2 workers of 2 for evacuation
[0.098s][info][gc          ] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 18M->18M(380M) 31.821ms
[0.098s][info][gc,cpu      ] GC(0) User=0.05s Sys=0.01s Real=0.03s
[0.075s][info][gc,start    ] GC(4) Pause Young (Concurrent Start) (G1 Evacuation Pause)
[0.083s][info][gc          ] GC(4) Pause Young (Concurrent Start) (G1 Evacuation Pause) 24M->25M(40M) 8.604ms
[0.083s][info][gc          ] GC(5) Concurrent Mark Cycle
[0.143s][info][gc          ] GC(5) Concurrent Mark Cycle 59.590ms
[0.169s][info][gc          ] GC(6) Pause Remark 44M->22M(64M) 0.215ms
[0.186s][info][gc          ] GC(6) Pause Cleanup 19M->19M(64M) 0.025ms
[0.187s][info][gc,marking  ] GC(6) Concurrent Cleanup for Next Mark 0.715ms
[0.143s][info][gc             ] GC(11) Pause Full (G1 Compaction Pause) 38M->10M(40M) 22.151ms
";

    const PARALLEL: &str = "\
[0.003s][info][gc] Using Parallel
[0.136s][info][gc,start    ] GC(0) Pause Young (Allocation Failure)
[0.150s][info][gc          ] GC(0) Pause Young (Allocation Failure) 95M->12M(362M) 13.895ms
[0.107s][info][gc,start    ] GC(2) Pause Full (Ergonomics)
[0.107s][info][gc,phases,start] GC(2) Marking Phase
[0.118s][info][gc,phases      ] GC(2) Marking Phase 11.291ms
[0.128s][info][gc,phases      ] GC(2) Compaction Phase 8.563ms
[0.128s][info][gc             ] GC(2) Pause Full (Ergonomics) 29M->5M(38M) 21.341ms
[0.128s][info][gc,cpu         ] GC(2) User=0.03s Sys=0.00s Real=0.02s
";

    const ZGC: &str = "\
[0.081s][info][gc     ] Using The Z Garbage Collector
[0.306s][info][gc,start    ] GC(0) Garbage Collection (Warmup)
[0.306s][info][gc,phases   ] GC(0) Pause Mark Start 0.010ms
[0.345s][info][gc,phases   ] GC(0) Concurrent Mark 38.336ms
[0.345s][info][gc,phases   ] GC(0) Pause Mark End 0.021ms
[0.351s][info][gc,phases   ] GC(0) Pause Relocate Start 0.010ms
[0.354s][info][gc,mmu      ] GC(0) MMU: 2ms/99.0%, 5ms/99.6%, 10ms/99.7%, 20ms/99.8%, 50ms/99.9%, 100ms/100.0%
[0.355s][info][gc          ] GC(0) Garbage Collection (Warmup) 232M(23%)->88M(9%)
[0.162s][info][gc,start    ] GC(1) Garbage Collection (Allocation Stall)
[0.162s][info][gc,phases   ] GC(1) Pause Mark Start 0.012ms
[0.205s][info][gc          ] Allocation Stall (main) 43.408ms
[0.205s][info][gc,phases   ] GC(1) Pause Mark End 0.032ms
[0.207s][info][gc,phases   ] GC(1) Pause Relocate Start 0.009ms
[0.261s][info][gc          ] Allocation Stall (main) 42.537ms
[0.210s][info][gc          ] GC(1) Garbage Collection (Allocation Stall) 48M(100%)->22M(46%)
";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn g1_pauses_young_remark_cleanup_full() {
        let log = parse(G1);
        assert_eq!(log.collections, 4, "GC(0), GC(4), GC(6), GC(11); not GC(5)");
        assert!(close(log.pause_max_ms, 31.821));
        assert!(close(
            log.pause_total_ms,
            31.821 + 8.604 + 0.215 + 0.025 + 22.151
        ));
        assert_eq!(log.stall_max_ms, 0.0);
    }

    #[test]
    fn parallel_phases_inside_a_pause_are_not_pauses() {
        let log = parse(PARALLEL);
        assert_eq!(log.collections, 2);
        assert!(close(log.pause_max_ms, 21.341));
        assert!(close(log.pause_total_ms, 13.895 + 21.341));
    }

    #[test]
    fn zgc_three_pauses_per_cycle_and_stalls() {
        let log = parse(ZGC);
        assert_eq!(log.collections, 2);
        assert!(close(log.pause_max_ms, 0.032));
        assert!(close(
            log.pause_total_ms,
            0.010 + 0.021 + 0.010 + 0.012 + 0.032 + 0.009
        ));
        assert!(close(log.stall_max_ms, 43.408));
    }

    #[test]
    fn lines_that_are_not_events() {
        assert_eq!(parse(""), GcLog::default());
        for line in [
            "[0.066s][info][gc,start    ] GC(0) Pause Young (Normal) (G1 Evacuation Pause)",
            "[0.1s][gc] GC(x) Pause Young 1.0ms",
            "[0.1s][gc] GC(1) Pause Young 1.0s",
            "[0.1s][gc",
            "GC(1) Concurrent Mark 38.336ms",
        ] {
            assert_eq!(event(message(line)), None, "{line}");
        }
        assert_eq!(
            event(message("GC(7) Pause Young 1.5ms")),
            Some(Event::Pause { id: 7, ms: 1.5 })
        );
    }
}
