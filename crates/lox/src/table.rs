//! Hash tables in the heap: an instance's fields, a class's methods, the
//! globals. A table is one [`TABLE`] object — capacity, count, then entries
//! of (key, value) — referenced from a slot of its owner; null is the empty
//! table. Keys are interned strings, compared by address and probed
//! (linearly) by the hash stored in the string, never by its address:
//! objects move. Lox never deletes a key, so there are no tombstones.

use rtmem_base::AllocError;
use rtmem_gc::{Mutator, ObjectRef};

use crate::binding::LoxVm;
use crate::object::{
    self, TABLE, WORD, read, read_ref, store_ref, store_value, string_hash, table, table_size,
    type_word,
};
use crate::roots::Stack;
use crate::value::Value;

/// The byte offset of `key`'s entry in `t`: the entry holding it, or the
/// empty entry where it would go.
#[inline(always)]
fn find(t: ObjectRef, key: ObjectRef) -> usize {
    let mask = read::<usize>(t, table::CAPACITY) - 1;
    let mut i = string_hash(key) as usize & mask;
    loop {
        let entry = table::ENTRIES + table::ENTRY * i;
        match read_ref(t, entry) {
            Some(k) if k != key => i = (i + 1) & mask,
            _ => return entry,
        }
    }
}

/// The value of `key` in table `t` (null: the empty table).
#[inline(always)]
pub(crate) fn get(t: Option<ObjectRef>, key: ObjectRef) -> Option<Value> {
    let t = t?;
    let mask = read::<usize>(t, table::CAPACITY) - 1;
    let mut i = string_hash(key) as usize & mask;
    loop {
        let entry = table::ENTRIES + table::ENTRY * i;
        // The key word as an address: null for an empty entry.
        let k: usize = read(t, entry);
        if k == key.addr() {
            return Some(read(t, entry + WORD));
        }
        if k == 0 {
            return None;
        }
        i = (i + 1) & mask;
    }
}

/// Overwrites the value of `key` in `t` if the key is there; returns
/// whether it was. Never allocates.
pub(crate) fn replace(
    m: &mut Mutator<LoxVm>,
    t: Option<ObjectRef>,
    key: ObjectRef,
    value: Value,
) -> bool {
    let Some(t) = t else { return false };
    let entry = find(t, key);
    if read_ref(t, entry).is_none() {
        return false;
    }
    store_value(m, t, entry + WORD, value);
    true
}

/// Where a table's reference lives.
#[derive(Clone, Copy)]
pub(crate) enum Home {
    /// The globals table, a mutator root.
    Globals,
    /// The reference field at this offset of the object three slots below
    /// the stack's top.
    Field(usize),
}

impl Home {
    fn load(self, stack: Stack) -> Option<ObjectRef> {
        match self {
            Home::Globals => stack.with(|st| st.globals),
            Home::Field(offset) => read_ref(stack.peek(2).to_object(), offset),
        }
    }

    fn store(self, m: &mut Mutator<LoxVm>, stack: Stack, t: ObjectRef) {
        match self {
            Home::Globals => stack.with(|st| st.globals = Some(t)),
            Home::Field(offset) => store_ref(m, stack.peek(2).to_object(), offset, Some(t)),
        }
    }
}

/// Sets a key to a value in the table at `home`. The operands are on the
/// stack, where a collection updates them: `[owner (for a field), value,
/// key]`, key on top; they stay there. Grows the table (allocating) when
/// one more key would load it past 3/4, as clox does.
pub(crate) fn set(m: &mut Mutator<LoxVm>, home: Home) -> Result<(), AllocError> {
    let stack = Stack::of(m);
    let t = home.load(stack);
    let capacity = t.map_or(0, |t| read::<usize>(t, table::CAPACITY));
    let count = t.map_or(0, |t| read::<usize>(t, table::COUNT));
    if (count + 1) * 4 > capacity * 3 {
        let grown = (capacity * 2).max(8);
        let new = m.alloc(type_word(TABLE), table_size(grown))?;
        object::write(new, table::CAPACITY, grown);
        // The old table may have moved during the allocation.
        if let Some(old) = home.load(stack) {
            for i in 0..capacity {
                let entry = table::ENTRIES + table::ENTRY * i;
                if let Some(key) = read_ref(old, entry) {
                    insert(m, new, key, read(old, entry + WORD));
                }
            }
        }
        home.store(m, stack, new);
    }
    let t = home.load(stack).expect("the table was just made");
    insert(m, t, stack.peek(0).to_object(), stack.peek(1));
    Ok(())
}

/// Sets `key` to `value` in `t`, which has room for one more key.
fn insert(m: &mut Mutator<LoxVm>, t: ObjectRef, key: ObjectRef, value: Value) {
    let entry = find(t, key);
    if read_ref(t, entry).is_none() {
        store_ref(m, t, entry, Some(key));
        let count: usize = read(t, table::COUNT);
        object::write(t, table::COUNT, count + 1);
    }
    store_value(m, t, entry + WORD, value);
}

/// The entries of table `t`: `(key, value)` for each index below its
/// capacity that holds a key. For copying a table while allocating: read
/// the table again (from a root) for every index.
pub(crate) fn entry(t: ObjectRef, index: usize) -> Option<(ObjectRef, Value)> {
    let entry = table::ENTRIES + table::ENTRY * index;
    read_ref(t, entry).map(|key| (key, read(t, entry + WORD)))
}

/// A table's capacity (0 for the empty table).
pub(crate) fn capacity(t: Option<ObjectRef>) -> usize {
    t.map_or(0, |t| read(t, table::CAPACITY))
}
