//! Bytecode: the opcodes, and the code blocks that hold each function's
//! bytecode and line table in the runtime-internal space.
//!
//! Code is not in the moving heap, so the interpreter keeps a raw
//! instruction pointer across collections. A block belongs to one function
//! object and is freed when that object dies: [`CodeTable`] is a weak table
//! from function objects to blocks that the collector sweeps through
//! `Collection::process_weak_tables` (see [`binding`](crate::binding)).
//! Freeing there is safe: it runs with every mutator stopped at a safepoint
//! (never inside the internal space's allocator), and the internal space's
//! allocators free from any thread.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rtmem_base::AllocError;
use rtmem_gc::ObjectRef;
use rtmem_spaces::Spaces;

use crate::object::{self, FUNCTION, function};

/// The opcodes (clox's, in its order).
pub(crate) mod op {
    pub(crate) const CONSTANT: u8 = 0;
    pub(crate) const NIL: u8 = 1;
    pub(crate) const TRUE: u8 = 2;
    pub(crate) const FALSE: u8 = 3;
    pub(crate) const POP: u8 = 4;
    pub(crate) const GET_LOCAL: u8 = 5;
    pub(crate) const SET_LOCAL: u8 = 6;
    pub(crate) const GET_GLOBAL: u8 = 7;
    pub(crate) const DEFINE_GLOBAL: u8 = 8;
    pub(crate) const SET_GLOBAL: u8 = 9;
    pub(crate) const GET_UPVALUE: u8 = 10;
    pub(crate) const SET_UPVALUE: u8 = 11;
    pub(crate) const GET_PROPERTY: u8 = 12;
    pub(crate) const SET_PROPERTY: u8 = 13;
    pub(crate) const GET_SUPER: u8 = 14;
    pub(crate) const EQUAL: u8 = 15;
    pub(crate) const GREATER: u8 = 16;
    pub(crate) const LESS: u8 = 17;
    pub(crate) const ADD: u8 = 18;
    pub(crate) const SUBTRACT: u8 = 19;
    pub(crate) const MULTIPLY: u8 = 20;
    pub(crate) const DIVIDE: u8 = 21;
    pub(crate) const NOT: u8 = 22;
    pub(crate) const NEGATE: u8 = 23;
    pub(crate) const PRINT: u8 = 24;
    pub(crate) const JUMP: u8 = 25;
    pub(crate) const JUMP_IF_FALSE: u8 = 26;
    pub(crate) const LOOP: u8 = 27;
    pub(crate) const CALL: u8 = 28;
    pub(crate) const INVOKE: u8 = 29;
    pub(crate) const SUPER_INVOKE: u8 = 30;
    pub(crate) const CLOSURE: u8 = 31;
    pub(crate) const CLOSE_UPVALUE: u8 = 32;
    pub(crate) const RETURN: u8 = 33;
    pub(crate) const CLASS: u8 = 34;
    pub(crate) const INHERIT: u8 = 35;
    pub(crate) const METHOD: u8 = 36;
}

/// One function's code block: `len` bytes of bytecode, then (4-aligned)
/// one `u32` source line per byte.
struct CodeBlock {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a code block is plain memory of the runtime-internal space, whose
// allocators free from any thread; the table hands the pointer around only
// under its lock.
unsafe impl Send for CodeBlock {}

/// Where a line table starts in a block of `len` code bytes.
fn lines_offset(len: usize) -> usize {
    len.next_multiple_of(4)
}

/// The weak table of code blocks, by function object.
#[derive(Default)]
pub(crate) struct CodeTable {
    spaces: OnceLock<Arc<Spaces>>,
    blocks: Mutex<Vec<(ObjectRef, CodeBlock)>>,
}

impl CodeTable {
    /// Gives the table the spaces it allocates blocks in (once, right after
    /// the memory manager is built: the binding exists before its spaces).
    pub(crate) fn attach(&self, spaces: Arc<Spaces>) {
        // A second attach would be the same memory manager's spaces again.
        let _ = self.spaces.set(spaces);
    }

    fn spaces(&self) -> &Spaces {
        self.spaces
            .get()
            .expect("the code table is attached to its spaces when the interpreter is built")
    }

    /// Copies `code` and `lines` into a new block of the runtime-internal
    /// space and gives it to `function`, which must not have one yet.
    pub(crate) fn install(
        &self,
        function: ObjectRef,
        code: &[u8],
        lines: &[u32],
    ) -> Result<(), AllocError> {
        debug_assert_eq!(object::tag(function), FUNCTION);
        debug_assert_eq!(code.len(), lines.len());
        let len = code.len();
        let size = lines_offset(len) + 4 * len;
        let layout = Layout::from_size_align(size.max(8), 8)
            .map_err(|_| AllocError::bad_layout(size, 8, "code block too large"))?;
        let ptr = self.spaces().internal().alloc(layout)?;
        // SAFETY: a fresh block of `size` bytes: the code, then the 4-aligned
        // line table (the block is 8-aligned).
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), ptr.as_ptr(), len);
            let table = ptr.as_ptr().add(lines_offset(len)).cast::<u32>();
            std::ptr::copy_nonoverlapping(lines.as_ptr(), table, len);
        }
        object::write(function, function::CODE, ptr.as_ptr() as usize);
        object::write(function, function::CODE_LEN, len);
        self.blocks
            .lock()
            .push((function, CodeBlock { ptr, layout }));
        Ok(())
    }

    /// Keeps the blocks of functions that survived (at their new
    /// addresses) and frees the others.
    pub(crate) fn sweep(&self, survivor: &dyn Fn(ObjectRef) -> Option<ObjectRef>) {
        self.blocks
            .lock()
            .retain_mut(|(function, block)| match survivor(*function) {
                Some(moved) => {
                    *function = moved;
                    true
                }
                None => {
                    // SAFETY: allocated by `install` with this layout; its
                    // function is dead, so no frame executes it.
                    unsafe { self.spaces().internal().free(block.ptr, block.layout) };
                    false
                }
            });
    }

    /// How many blocks are live.
    pub(crate) fn len(&self) -> usize {
        self.blocks.lock().len()
    }
}

impl Drop for CodeTable {
    fn drop(&mut self) {
        if let Some(spaces) = self.spaces.get() {
            for (_, block) in self.blocks.get_mut().drain(..) {
                // SAFETY: allocated by `install` with this layout; the heap
                // (and every function object) is going away.
                unsafe { spaces.internal().free(block.ptr, block.layout) };
            }
        }
    }
}

/// The first instruction of a compiled function.
#[inline(always)]
pub(crate) fn code(function: ObjectRef) -> *const u8 {
    object::read::<usize>(function, function::CODE) as *const u8
}

/// The source line of the instruction at byte `offset` of `function`'s code.
pub(crate) fn line(function: ObjectRef, offset: usize) -> u32 {
    let len: usize = object::read(function, function::CODE_LEN);
    assert!(
        offset < len,
        "offset {offset} past the code of {function:?} ({len} bytes)"
    );
    // SAFETY: the block holds `len` line entries after the code.
    unsafe {
        code(function)
            .add(lines_offset(len))
            .cast::<u32>()
            .add(offset)
            .read()
    }
}
