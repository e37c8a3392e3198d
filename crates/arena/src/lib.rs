//! rtmem-arena: under construction.
