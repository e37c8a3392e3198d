//! The interpreter's state that holds object references — the mutator's
//! roots: the value stack, the call frames, the open upvalues, the
//! functions being compiled, the globals table and the `"init"` string.
//!
//! [`LoxRoots`] owns one [`VmState`] on the Rust heap (it never moves, so the
//! interpreter keeps raw pointers into its stack). The collector reaches it
//! through `Scanning::scan_mutator_roots` only while the mutator is stopped
//! at a collection point; the interpreter reaches it through a raw pointer
//! ([`Stack`]) and never holds a Rust reference to it across such a point.
//! Positions in the stack are kept as indices in the state (never as
//! pointers derived from a reference that a later borrow would invalidate).

use std::ptr::NonNull;

use rtmem_gc::{Mutator, ObjectRef, SlotVisitor};

use crate::binding::LoxVm;
use crate::value::{Value, visit_value};

/// Call frames at most (clox's `FRAMES_MAX`): one more is "Stack overflow.".
pub(crate) const FRAMES_MAX: usize = 64;
/// Value slots the interpreter may use (clox's `STACK_MAX`).
pub(crate) const STACK_MAX: usize = FRAMES_MAX * 256;
/// Slots above [`STACK_MAX`] for the few temporaries runtime helpers push.
const STACK_SLACK: usize = 16;

/// An active call.
#[derive(Clone, Copy)]
pub(crate) struct CallFrame {
    /// The closure running (a root).
    pub(crate) closure: Option<ObjectRef>,
    /// The next instruction (stored here only when the frame is left, and
    /// before anything that may inspect frames: errors and collections need
    /// only the closures).
    pub(crate) ip: *const u8,
    /// The index of the frame's first stack slot (the callee, or `this`).
    pub(crate) slots: usize,
    /// The function's constants: the items of its pinned constant array
    /// (dangling if it has none; never read then).
    pub(crate) constants: *const Value,
}

/// Everything the interpreter holds that references objects.
pub(crate) struct VmState {
    pub(crate) stack: [Value; STACK_MAX + STACK_SLACK],
    /// The number of live stack slots.
    pub(crate) top: usize,
    pub(crate) frames: [CallFrame; FRAMES_MAX],
    pub(crate) frame_count: usize,
    /// Upvalues still pointing into the stack, by ascending stack slot.
    pub(crate) open_upvalues: Vec<Option<ObjectRef>>,
    /// The function objects being compiled, outermost first.
    pub(crate) compiling: Vec<Option<ObjectRef>>,
    /// The globals table's entries.
    pub(crate) globals: Option<ObjectRef>,
    /// The interned `"init"`, the initializer's name.
    pub(crate) init_string: Option<ObjectRef>,
    /// Scratch bytes for string concatenation.
    pub(crate) scratch: Vec<u8>,
}

/// The roots of the interpreter's one mutator: the value stack, the call
/// frames, the open upvalues, the functions being compiled, the globals
/// table and the `"init"` string, in one owned state that never moves.
pub struct LoxRoots {
    state: NonNull<VmState>,
}

// SAFETY: the state is owned by this value alone (a leaked box); the raw
// pointers inside point into the state itself or into code blocks, which
// any thread may read.
unsafe impl Send for LoxRoots {}

impl Default for LoxRoots {
    fn default() -> Self {
        let state = Box::new(VmState {
            stack: [Value::NIL; STACK_MAX + STACK_SLACK],
            top: 0,
            frames: [CallFrame {
                closure: None,
                ip: std::ptr::null(),
                slots: 0,
                constants: std::ptr::null(),
            }; FRAMES_MAX],
            frame_count: 0,
            open_upvalues: Vec::new(),
            compiling: Vec::new(),
            globals: None,
            init_string: None,
            scratch: Vec::new(),
        });
        LoxRoots {
            state: NonNull::from(Box::leak(state)),
        }
    }
}

impl Drop for LoxRoots {
    fn drop(&mut self) {
        // SAFETY: leaked from a box in `default`, dropped once here.
        drop(unsafe { Box::from_raw(self.state.as_ptr()) });
    }
}

impl LoxRoots {
    /// Visits every root slot (`Scanning::scan_mutator_roots`).
    pub(crate) fn scan(&mut self, v: &mut impl SlotVisitor) {
        // SAFETY: the collector calls this with the mutator stopped, so
        // nothing else touches the state meanwhile.
        let st = unsafe { self.state.as_mut() };
        for slot in &mut st.stack[..st.top] {
            // SAFETY: a live stack slot.
            unsafe { visit_value(slot, v) };
        }
        for frame in &mut st.frames[..st.frame_count] {
            v.visit(&mut frame.closure);
        }
        st.open_upvalues.iter_mut().for_each(|u| v.visit(u));
        st.compiling.iter_mut().for_each(|f| v.visit(f));
        v.visit(&mut st.globals);
        v.visit(&mut st.init_string);
    }
}

/// A handle on the mutator's [`VmState`] for code outside the interpreter
/// loop. Each method touches the state for its own duration only, so the
/// handle stays valid across collections (which update the state in place).
#[derive(Clone, Copy)]
pub(crate) struct Stack(NonNull<VmState>);

impl Stack {
    /// The state of `m`'s roots.
    #[inline(always)]
    pub(crate) fn of(m: &mut Mutator<LoxVm>) -> Stack {
        Stack(m.roots().state)
    }

    /// The raw state, for the interpreter loop.
    #[inline(always)]
    pub(crate) fn raw(self) -> *mut VmState {
        self.0.as_ptr()
    }

    /// Runs `f` on the state.
    #[inline(always)]
    pub(crate) fn with<R>(self, f: impl FnOnce(&mut VmState) -> R) -> R {
        // SAFETY: the mutator's thread is the only one touching the state
        // outside collections, and `f` cannot reach a collection point (it
        // is not given the mutator), so this is the only reference.
        f(unsafe { &mut *self.0.as_ptr() })
    }

    /// Pushes a temporary: a value the caller keeps rooted across an
    /// allocation. Temporaries use the slots above [`STACK_MAX`], so this
    /// cannot fail while callers push at most a few at a time.
    #[inline(always)]
    pub(crate) fn push(self, v: Value) {
        self.with(|st| {
            assert!(
                st.top < st.stack.len(),
                "the value stack's slack for temporaries is exhausted"
            );
            st.stack[st.top] = v;
            st.top += 1;
        })
    }

    /// Pops the top value.
    #[inline(always)]
    pub(crate) fn pop(self) -> Value {
        self.with(|st| {
            st.top -= 1;
            st.stack[st.top]
        })
    }

    /// The value `distance` slots below the top (0: the top).
    #[inline(always)]
    pub(crate) fn peek(self, distance: usize) -> Value {
        self.with(|st| st.stack[st.top - 1 - distance])
    }

    /// Replaces the value `distance` slots below the top.
    #[inline(always)]
    pub(crate) fn set(self, distance: usize, v: Value) {
        self.with(|st| {
            let index = st.top - 1 - distance;
            st.stack[index] = v;
        })
    }

    /// Forgets every frame, value and open upvalue (after a runtime error).
    pub(crate) fn reset(self) {
        self.with(|st| {
            st.top = 0;
            st.frame_count = 0;
            st.open_upvalues.clear();
        })
    }
}
