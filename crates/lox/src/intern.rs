//! The interned-string table: every Lox string is interned, so string
//! equality and table lookups compare addresses.
//!
//! The table holds its strings *weakly*: a string only the table knows is
//! garbage, and the collector's `process_weak_tables` callback drops it (or
//! updates its address if it moved). Slots are probed by the hash stored in
//! each string object — never by address, since objects move.

use rtmem_base::AllocError;
use rtmem_gc::{Mutator, ObjectRef};

use crate::binding::LoxVm;
use crate::object::{self, STRING, string, string_bytes, string_hash, string_size, type_word};

/// An open-addressing set of string objects, keyed by their contents.
#[derive(Default)]
pub(crate) struct StringTable {
    slots: Vec<Option<ObjectRef>>,
    count: usize,
}

impl StringTable {
    /// The interned string with these bytes and hash.
    pub(crate) fn find(&self, bytes: &[u8], hash: u32) -> Option<ObjectRef> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i]?;
            if string_hash(s) == hash && string_bytes(s) == bytes {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a string that is not in the table yet.
    pub(crate) fn insert(&mut self, s: ObjectRef) {
        if (self.count + 1) * 4 > self.slots.len() * 3 {
            let capacity = (self.slots.len() * 2).max(64);
            let old = std::mem::replace(&mut self.slots, vec![None; capacity]);
            self.count = 0;
            old.into_iter().flatten().for_each(|s| self.place(s));
        }
        self.place(s);
    }

    fn place(&mut self, s: ObjectRef) {
        let mask = self.slots.len() - 1;
        let mut i = string_hash(s) as usize & mask;
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some(s);
        self.count += 1;
    }

    /// Drops the strings that died and moves the others to their new
    /// addresses (rehashing: probe sequences depend on which entries remain).
    pub(crate) fn sweep(&mut self, survivor: &dyn Fn(ObjectRef) -> Option<ObjectRef>) {
        let capacity = self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![None; capacity]);
        self.count = 0;
        old.into_iter()
            .flatten()
            .filter_map(survivor)
            .for_each(|s| self.place(s));
    }

    /// How many strings are interned.
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// The interned string with `bytes`, allocating it if there is none.
/// `bytes` must not point into the heap (an allocation may move it).
pub(crate) fn intern(m: &mut Mutator<LoxVm>, bytes: &[u8]) -> Result<ObjectRef, AllocError> {
    let hash = object::hash_bytes(bytes);
    let found = m.heap().vm().strings.lock().find(bytes, hash);
    if let Some(s) = found {
        // A string found through a weak table may be one a concurrent
        // marker has not reached (it was unreachable when marking began).
        m.keep_alive(s);
        return Ok(s);
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| AllocError::bad_layout(bytes.len(), 8, "Lox strings are under 4 GiB"))?;
    let s = m.alloc(type_word(STRING), string_size(bytes.len()))?;
    object::write(s, string::LEN, len);
    object::write(s, string::HASH, hash);
    // SAFETY: a fresh string of `len` bytes after its length and hash; the
    // caller's bytes are not in the heap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (s.addr() + string::BYTES) as *mut u8,
            bytes.len(),
        )
    };
    m.heap().vm().strings.lock().insert(s);
    Ok(s)
}
