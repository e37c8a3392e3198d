//! Shared workloads for the rtmem benchmarks.
