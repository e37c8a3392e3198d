//! rtmem-freelist: under construction.
