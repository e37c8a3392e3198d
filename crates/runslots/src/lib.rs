//! rtmem-runslots: under construction.
