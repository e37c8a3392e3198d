//! rtmem-tlab: under construction.
