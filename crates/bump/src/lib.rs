//! rtmem-bump: under construction.
