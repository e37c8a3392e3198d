//! The interpreter: clox's `run()` loop over the frames in the mutator's
//! roots, and the runtime operations it calls out to.
//!
//! The loop keeps the instruction pointer, the stack top and the frame base
//! in locals. Code blocks and the value stack never move, so those raw
//! pointers survive collections; object references never live in a local
//! across a *collection point* (an allocation, a poll): they are on the
//! stack or in a frame, where the collector updates them, and are read back
//! afterwards. Before every collection point the loop stores the stack top
//! (and the instruction pointer, for error traces) into the state
//! (`sync!`); after a call or return it reloads its locals from the new
//! frame (`reload!`).

use std::io::Write;
use std::ptr::addr_of_mut;
use std::sync::OnceLock;
use std::time::Instant;

use rtmem_base::AllocError;
use rtmem_gc::{Mutator, ObjectRef};

use crate::binding::LoxVm;
use crate::chunk::{self, op};
use crate::intern::intern;
use crate::object::{
    self, BOUND_METHOD, CLASS, CLOSURE, INSTANCE, NATIVE, STRING, UPVALUE, UPVALUE_CLOSED, WORD,
    bound, class, closure, closure_function, closure_size, function, function_name, instance, is,
    native, read, read_ref, store_ref, store_value, string_bytes, tag, type_word, upvalue, values,
};
use crate::roots::{CallFrame, FRAMES_MAX, STACK_MAX, Stack, VmState};
use crate::table::{self, Home};
use crate::value::{Value, write_value};

/// A native function: its arguments to its result.
type NativeFn = fn(&[Value]) -> Value;

/// The native functions every program sees as globals, by index (a native
/// object stores its index).
pub(crate) const NATIVES: [(&str, NativeFn); 1] = [("clock", clock)];

/// `clock()`: seconds since the interpreter started.
fn clock(_args: &[Value]) -> Value {
    static START: OnceLock<Instant> = OnceLock::new();
    Value::number(START.get_or_init(Instant::now).elapsed().as_secs_f64())
}

/// The message of a runtime error caused by a failed allocation.
pub(crate) fn out_of_memory(e: AllocError) -> String {
    format!("Out of memory: {e}.")
}

/// A reference field that is never null once the object is initialized.
#[inline(always)]
fn field(object: ObjectRef, offset: usize) -> ObjectRef {
    match read_ref(object, offset) {
        Some(r) => r,
        None => null_field(object, offset),
    }
}

#[cold]
#[inline(never)]
fn null_field(object: ObjectRef, offset: usize) -> ! {
    panic!("{object:?} has a null reference at offset {offset}")
}

/// Runs the frames on the stack until the outermost one returns. On a
/// runtime error, returns its message with the frames left as they were
/// (each frame's `ip` just past the failing instruction) for [`trace`].
pub(crate) fn run<W: Write>(m: &mut Mutator<LoxVm>, out: &mut W) -> Result<(), String> {
    let stack = Stack::of(m);
    let st: *mut VmState = stack.raw();
    // SAFETY: `st` is the mutator's state, alive and unmoved for the whole
    // run, and no Rust reference to it is live while the loop touches it
    // (helpers borrow it only for their own duration). The same holds for
    // every access below through `st`, `base`, `frames`, `sp`, `slots` and
    // `frame` ("see the top of `run`").
    let base: *mut Value = unsafe { addr_of_mut!((*st).stack) }.cast();
    // SAFETY: as above.
    let frames: *mut CallFrame = unsafe { addr_of_mut!((*st).frames) }.cast();
    // SAFETY: `STACK_MAX` is inside the stack array (which has slack above).
    let limit = unsafe { base.add(STACK_MAX) };
    let mut frame: *mut CallFrame;
    let mut ip: *const u8;
    let mut slots: *mut Value;
    let mut sp: *mut Value;
    let mut constants: *const Value;

    macro_rules! reload {
        () => {
            // SAFETY: see the top of `run`; a frame is active.
            unsafe {
                frame = frames.add((*st).frame_count - 1);
                ip = (*frame).ip;
                slots = base.add((*frame).slots);
                sp = base.add((*st).top);
                constants = (*frame).constants;
            }
        };
    }
    macro_rules! enter {
        ($new:expr) => {{
            let new: CallFrame = $new;
            // SAFETY: see the top of `run`; `push_frame` made the frame
            // above the current one, and its slots are on the stack.
            unsafe {
                frame = frame.add(1);
                slots = base.add(new.slots);
            }
            ip = new.ip;
            constants = new.constants;
        }};
    }
    macro_rules! sync {
        () => {
            // SAFETY: see the top of `run`.
            unsafe {
                (*st).top = sp.offset_from(base) as usize;
                (*frame).ip = ip;
            }
        };
    }
    macro_rules! throw {
        ($($arg:tt)*) => {{
            sync!();
            return Err(format!($($arg)*));
        }};
    }
    macro_rules! attempt {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err(e),
            }
        };
    }
    macro_rules! read_byte {
        () => {{
            // SAFETY: `ip` is inside the running function's code block: the
            // compiler ends every function with RETURN and its jumps land
            // inside the code.
            unsafe {
                let byte = *ip;
                ip = ip.add(1);
                byte
            }
        }};
    }
    macro_rules! read_short {
        () => {{
            let high = usize::from(read_byte!());
            (high << 8) | usize::from(read_byte!())
        }};
    }
    macro_rules! push {
        ($v:expr) => {{
            let v = $v;
            if sp >= limit {
                throw!("Stack overflow.");
            }
            // SAFETY: `sp` is below `limit`, inside the stack.
            unsafe {
                sp.write(v);
                sp = sp.add(1);
            }
        }};
    }
    macro_rules! push_temp {
        ($v:expr) => {{
            // SAFETY: `sp` is at most `limit` (`push!` keeps it there), and
            // an instruction pushes at most one temporary past it, into the
            // stack's slack.
            unsafe {
                sp.write($v);
                sp = sp.add(1);
            }
        }};
    }
    macro_rules! pop {
        () => {{
            // SAFETY: the compiler balances pushes and pops: a pop takes a
            // live slot of the current frame.
            unsafe {
                sp = sp.sub(1);
                sp.read()
            }
        }};
    }
    macro_rules! peek {
        ($distance:expr) => {{
            // SAFETY: as for `pop!`: the operand is a live slot.
            unsafe { sp.sub($distance + 1).read() }
        }};
    }
    macro_rules! set_top {
        ($v:expr) => {{
            // SAFETY: as for `pop!`.
            unsafe { sp.sub(1).write($v) }
        }};
    }
    macro_rules! closure {
        () => {
            // SAFETY: see the top of `run`; the frame is active, so its
            // closure is set.
            active_closure(unsafe { (*frame).closure })
        };
    }
    macro_rules! constant {
        ($index:expr) => {{
            let index = usize::from($index);
            debug_assert_eq!(constants, frame_constants(closure!()));
            // SAFETY: the compiler emits indices of the function's own
            // constants; the array is pinned and alive (the frame's closure
            // references its function, which references the array).
            unsafe { constants.add(index).read() }
        }};
    }
    macro_rules! upvalue_object {
        ($index:expr) => {
            field(closure!(), closure::UPVALUES + WORD * $index)
        };
    }
    macro_rules! alloc {
        ($tag:expr, $size:expr) => {{
            match m.alloc(type_word($tag), $size) {
                Ok(object) => object,
                Err(e) => throw!("{}", out_of_memory(e)),
            }
        }};
    }
    macro_rules! numbers {
        ($a:ident, $b:ident, $result:expr) => {{
            let $b = peek!(0);
            let $a = peek!(1);
            if !$a.is_number() || !$b.is_number() {
                throw!("Operands must be numbers.");
            }
            let ($a, $b) = ($a.as_number(), $b.as_number());
            pop!();
            set_top!($result);
        }};
    }

    reload!();
    loop {
        match read_byte!() {
            op::CONSTANT => {
                let index = read_byte!();
                push!(constant!(index));
            }
            op::NIL => push!(Value::NIL),
            op::TRUE => push!(Value::TRUE),
            op::FALSE => push!(Value::FALSE),
            op::POP => {
                pop!();
            }
            op::GET_LOCAL => {
                let slot = usize::from(read_byte!());
                // SAFETY: the compiler resolves locals to slots of this frame.
                push!(unsafe { slots.add(slot).read() });
            }
            op::SET_LOCAL => {
                let slot = usize::from(read_byte!());
                let v = peek!(0);
                // SAFETY: as for GET_LOCAL.
                unsafe { slots.add(slot).write(v) };
            }
            op::GET_GLOBAL => {
                let name = constant!(read_byte!()).to_object();
                // SAFETY: see the top of `run`.
                match table::get(unsafe { (*st).globals }, name) {
                    Some(v) => push!(v),
                    None => throw!("Undefined variable '{}'.", text(name)),
                }
            }
            op::DEFINE_GLOBAL => {
                let name = constant!(read_byte!());
                push_temp!(name);
                sync!();
                if let Err(e) = table::set(m, Home::Globals) {
                    throw!("{}", out_of_memory(e));
                }
                pop!();
                pop!();
            }
            op::SET_GLOBAL => {
                let name = constant!(read_byte!()).to_object();
                // SAFETY: see the top of `run`.
                let globals = unsafe { (*st).globals };
                if !table::replace(m, globals, name, peek!(0)) {
                    throw!("Undefined variable '{}'.", text(name));
                }
            }
            op::GET_UPVALUE => {
                let up = upvalue_object!(usize::from(read_byte!()));
                let slot: usize = read(up, upvalue::SLOT);
                let v = if slot == UPVALUE_CLOSED {
                    read(up, upvalue::CLOSED)
                } else {
                    // SAFETY: an open upvalue's slot is a live stack slot.
                    unsafe { base.add(slot).read() }
                };
                push!(v);
            }
            op::SET_UPVALUE => {
                let up = upvalue_object!(usize::from(read_byte!()));
                let slot: usize = read(up, upvalue::SLOT);
                let v = peek!(0);
                if slot == UPVALUE_CLOSED {
                    store_value(m, up, upvalue::CLOSED, v);
                } else {
                    // SAFETY: an open upvalue's slot is a live stack slot.
                    unsafe { base.add(slot).write(v) };
                }
            }
            op::GET_PROPERTY => {
                let name = constant!(read_byte!()).to_object();
                let receiver = peek!(0);
                if !is(receiver, INSTANCE) {
                    throw!("Only instances have properties.");
                }
                let instance = receiver.to_object();
                if let Some(v) = table::get(read_ref(instance, instance::FIELDS), name) {
                    set_top!(v);
                } else {
                    sync!();
                    attempt!(bind_method(m, field(instance, instance::CLASS), name));
                }
            }
            op::SET_PROPERTY => {
                let name = constant!(read_byte!());
                let target = peek!(1);
                if !is(target, INSTANCE) {
                    throw!("Only instances have fields.");
                }
                let fields = read_ref(target.to_object(), instance::FIELDS);
                if !table::replace(m, fields, name.to_object(), peek!(0)) {
                    push_temp!(name);
                    sync!();
                    if let Err(e) = table::set(m, Home::Field(instance::FIELDS)) {
                        throw!("{}", out_of_memory(e));
                    }
                    pop!();
                }
                let v = pop!();
                set_top!(v);
            }
            op::GET_SUPER => {
                let name = constant!(read_byte!()).to_object();
                let superclass = pop!().to_object();
                sync!();
                attempt!(bind_method(m, superclass, name));
            }
            op::EQUAL => {
                let b = pop!();
                let a = peek!(0);
                set_top!(Value::bool(a.equals(b)));
            }
            op::GREATER => numbers!(a, b, Value::bool(a > b)),
            op::LESS => numbers!(a, b, Value::bool(a < b)),
            op::ADD => {
                let b = peek!(0);
                let a = peek!(1);
                if a.is_number() && b.is_number() {
                    pop!();
                    set_top!(Value::number(a.as_number() + b.as_number()));
                } else if is(a, STRING) && is(b, STRING) {
                    sync!();
                    attempt!(concatenate(m));
                    pop!();
                } else {
                    throw!("Operands must be two numbers or two strings.");
                }
            }
            op::SUBTRACT => numbers!(a, b, Value::number(a - b)),
            op::MULTIPLY => numbers!(a, b, Value::number(a * b)),
            op::DIVIDE => numbers!(a, b, Value::number(a / b)),
            op::NOT => {
                let v = peek!(0);
                set_top!(Value::bool(v.is_falsey()));
            }
            op::NEGATE => {
                let v = peek!(0);
                if !v.is_number() {
                    throw!("Operand must be a number.");
                }
                set_top!(Value::number(-v.as_number()));
            }
            op::PRINT => {
                let v = pop!();
                // Like printf, output errors (a closed pipe) are not Lox errors.
                let _ = write_value(out, v).and_then(|()| out.write_all(b"\n"));
            }
            op::JUMP => {
                let offset = read_short!();
                // SAFETY: the compiler's jumps land inside the code.
                ip = unsafe { ip.add(offset) };
            }
            op::JUMP_IF_FALSE => {
                let offset = read_short!();
                if peek!(0).is_falsey() {
                    // SAFETY: as for JUMP.
                    ip = unsafe { ip.add(offset) };
                }
            }
            op::LOOP => {
                let offset = read_short!();
                // SAFETY: as for JUMP.
                ip = unsafe { ip.sub(offset) };
                sync!();
                m.poll();
            }
            op::CALL => {
                let argc = usize::from(read_byte!());
                let callee = peek!(argc);
                sync!();
                match callee.as_object() {
                    Some(c) if tag(c) == CLOSURE => enter!(attempt!(push_frame(stack, c, argc))),
                    _ => {
                        attempt!(call_value(m, argc));
                        reload!();
                    }
                }
                m.poll();
            }
            op::INVOKE => {
                let name = constant!(read_byte!()).to_object();
                let argc = usize::from(read_byte!());
                let receiver = peek!(argc);
                if !is(receiver, INSTANCE) {
                    throw!("Only instances have methods.");
                }
                let instance = receiver.to_object();
                sync!();
                if let Some(v) = table::get(read_ref(instance, instance::FIELDS), name) {
                    // SAFETY: the receiver's slot is live (peeked above).
                    unsafe { sp.sub(argc + 1).write(v) };
                    attempt!(call_value(m, argc));
                    reload!();
                } else {
                    let class = field(instance, instance::CLASS);
                    enter!(attempt!(invoke_from_class(stack, class, name, argc)));
                }
                m.poll();
            }
            op::SUPER_INVOKE => {
                let name = constant!(read_byte!()).to_object();
                let argc = usize::from(read_byte!());
                let superclass = pop!().to_object();
                sync!();
                enter!(attempt!(invoke_from_class(stack, superclass, name, argc)));
                m.poll();
            }
            op::CLOSURE => {
                let index = read_byte!();
                let count = read::<u32>(constant!(index).to_object(), function::UPVALUES);
                let count = count as usize;
                sync!();
                let new = alloc!(CLOSURE, closure_size(count));
                // The allocation may have moved the function: read it again.
                let function = constant!(index).to_object();
                object::write(new, closure::COUNT, count);
                store_ref(m, new, closure::FUNCTION, Some(function));
                push!(Value::object(new));
                for i in 0..count {
                    let is_local = read_byte!() != 0;
                    let index = usize::from(read_byte!());
                    let captured = if is_local {
                        sync!();
                        // SAFETY: `slots` points into the stack.
                        let slot = unsafe { slots.offset_from(base) } as usize + index;
                        match capture_upvalue(m, slot) {
                            Ok(up) => up,
                            Err(e) => throw!("{}", out_of_memory(e)),
                        }
                    } else {
                        upvalue_object!(index)
                    };
                    let new = peek!(0).to_object();
                    store_ref(m, new, closure::UPVALUES + WORD * i, Some(captured));
                }
            }
            op::CLOSE_UPVALUE => {
                // SAFETY: `sp - 1` is the live slot being closed.
                let slot = unsafe { sp.offset_from(base) } as usize - 1;
                close_upvalues(m, slot);
                pop!();
            }
            op::RETURN => {
                let result = pop!();
                // SAFETY: see the top of `run`.
                unsafe {
                    let from = slots.offset_from(base) as usize;
                    if !(*st).open_upvalues.is_empty() {
                        close_upvalues(m, from);
                    }
                    (*st).frame_count -= 1;
                    if (*st).frame_count == 0 {
                        (*st).top = 0;
                        return Ok(());
                    }
                    (*st).top = from;
                }
                reload!();
                push_temp!(result);
            }
            op::CLASS => {
                let index = read_byte!();
                sync!();
                let new = alloc!(CLASS, class::SIZE);
                let name = constant!(index);
                store_ref(m, new, class::NAME, name.as_object());
                push!(Value::object(new));
            }
            op::INHERIT => {
                if !is(peek!(1), CLASS) {
                    throw!("Superclass must be a class.");
                }
                sync!();
                if let Err(e) = inherit(m) {
                    throw!("{}", out_of_memory(e));
                }
                pop!();
            }
            op::METHOD => {
                let name = constant!(read_byte!());
                push_temp!(name);
                sync!();
                if let Err(e) = table::set(m, Home::Field(class::METHODS)) {
                    throw!("{}", out_of_memory(e));
                }
                // The operands may have moved: read them from the stack.
                let (name, method, class) = (pop!(), pop!(), peek!(0));
                // SAFETY: see the top of `run`.
                if name.as_object() == unsafe { (*st).init_string } {
                    store_ref(m, class.to_object(), class::INIT, method.as_object());
                }
            }
            other => {
                debug_assert!(false, "the compiler never emits opcode {other}");
                // SAFETY: `ip` is at an instruction boundary of compiled code
                // (see `read_byte!`), and the compiler emits only the opcodes
                // above.
                unsafe { std::hint::unreachable_unchecked() }
            }
        }
    }
}

/// The closure of an active frame.
#[inline(always)]
fn active_closure(closure: Option<ObjectRef>) -> ObjectRef {
    match closure {
        Some(c) => c,
        None => panic!("an active frame has no closure"),
    }
}

/// A string's text for an error message.
fn text(s: ObjectRef) -> String {
    String::from_utf8_lossy(string_bytes(s)).into_owned()
}

/// Pushes a frame calling `closure` with the `argc` arguments on top of the
/// stack (the callee below them); returns it.
#[inline(always)]
fn push_frame(stack: Stack, closure: ObjectRef, argc: usize) -> Result<CallFrame, String> {
    let function = closure_function(closure);
    let arity = read::<u32>(function, function::ARITY) as usize;
    if argc != arity {
        return Err(wrong_arity(arity, argc));
    }
    stack.with(|st| {
        if st.frame_count >= FRAMES_MAX {
            return Err("Stack overflow.".to_owned());
        }
        let frame = new_frame(closure, st.top - argc - 1);
        st.frames[st.frame_count] = frame;
        st.frame_count += 1;
        Ok(frame)
    })
}

#[cold]
#[inline(never)]
fn wrong_arity(arity: usize, argc: usize) -> String {
    format!("Expected {arity} arguments but got {argc}.")
}

/// A frame running `closure` with its slots from stack index `slots`.
#[inline(always)]
pub(crate) fn new_frame(closure: ObjectRef, slots: usize) -> CallFrame {
    CallFrame {
        closure: Some(closure),
        ip: chunk::code(closure_function(closure)),
        slots,
        constants: frame_constants(closure),
    }
}

/// Where the constants of `closure`'s function are.
#[inline(always)]
fn frame_constants(closure: ObjectRef) -> *const Value {
    match read_ref(closure_function(closure), function::CONSTANTS) {
        Some(array) => (array.addr() + values::ITEMS) as *const Value,
        None => std::ptr::NonNull::dangling().as_ptr(),
    }
}

/// Calls the value `argc` slots below the top with the arguments above it:
/// a closure, bound method or class gets a frame; a native runs now.
fn call_value(m: &mut Mutator<LoxVm>, argc: usize) -> Result<(), String> {
    let stack = Stack::of(m);
    let callee = stack.peek(argc);
    let not_callable = || Err("Can only call functions and classes.".to_owned());
    let Some(object) = callee.as_object() else {
        return not_callable();
    };
    match tag(object) {
        CLOSURE => push_frame(stack, object, argc).map(drop),
        BOUND_METHOD => {
            stack.set(argc, read(object, bound::RECEIVER));
            push_frame(stack, field(object, bound::METHOD), argc).map(drop)
        }
        CLASS => {
            let new = m
                .alloc(type_word(INSTANCE), instance::SIZE)
                .map_err(out_of_memory)?;
            let class = stack.peek(argc).to_object();
            store_ref(m, new, instance::CLASS, Some(class));
            stack.set(argc, Value::object(new));
            match read_ref(class, class::INIT) {
                Some(init) => push_frame(stack, init, argc).map(drop),
                None if argc != 0 => Err(format!("Expected 0 arguments but got {argc}.")),
                None => Ok(()),
            }
        }
        NATIVE => {
            let (_, native) = NATIVES[read::<usize>(object, native::INDEX)];
            let result = stack.with(|st| {
                let result = native(&st.stack[st.top - argc..st.top]);
                st.top -= argc + 1;
                result
            });
            stack.push(result);
            Ok(())
        }
        _ => not_callable(),
    }
}

/// Calls method `name` of `class` on the receiver `argc` slots below the
/// top; returns the new frame.
#[inline(always)]
fn invoke_from_class(
    stack: Stack,
    class: ObjectRef,
    name: ObjectRef,
    argc: usize,
) -> Result<CallFrame, String> {
    match table::get(read_ref(class, class::METHODS), name) {
        Some(method) => push_frame(stack, method.to_object(), argc),
        None => Err(undefined_property(name)),
    }
}

#[cold]
#[inline(never)]
fn undefined_property(name: ObjectRef) -> String {
    format!("Undefined property '{}'.", text(name))
}

/// Replaces the instance on top of the stack with its method `name` of
/// `class`, bound to it.
fn bind_method(m: &mut Mutator<LoxVm>, class: ObjectRef, name: ObjectRef) -> Result<(), String> {
    let Some(method) = table::get(read_ref(class, class::METHODS), name) else {
        return Err(undefined_property(name));
    };
    let stack = Stack::of(m);
    stack.push(method);
    let new = m
        .alloc(type_word(BOUND_METHOD), bound::SIZE)
        .map_err(out_of_memory)?;
    let method = stack.pop();
    store_value(m, new, bound::RECEIVER, stack.peek(0));
    store_ref(m, new, bound::METHOD, method.as_object());
    stack.set(0, Value::object(new));
    Ok(())
}

/// Replaces the first of the two strings on top of the stack with their
/// concatenation (the caller pops the second).
fn concatenate(m: &mut Mutator<LoxVm>) -> Result<(), String> {
    let stack = Stack::of(m);
    let (a, b) = (stack.peek(1).to_object(), stack.peek(0).to_object());
    let mut scratch = stack.with(|st| std::mem::take(&mut st.scratch));
    scratch.clear();
    scratch.extend_from_slice(string_bytes(a));
    scratch.extend_from_slice(string_bytes(b));
    // The bytes are copied out of the heap, so the allocation may move a and b.
    let result = intern(m, &scratch);
    stack.with(|st| st.scratch = scratch);
    let s = result.map_err(out_of_memory)?;
    stack.set(1, Value::object(s));
    Ok(())
}

/// The open upvalue of stack slot `slot`, made if there is none.
fn capture_upvalue(m: &mut Mutator<LoxVm>, slot: usize) -> Result<ObjectRef, AllocError> {
    let stack = Stack::of(m);
    let (found, at) = stack.with(|st| {
        let open = &st.open_upvalues;
        let mut at = open.len();
        while at > 0 {
            let up = open[at - 1].expect("open upvalues are live");
            let s: usize = read(up, upvalue::SLOT);
            if s == slot {
                return (Some(up), at);
            }
            if s < slot {
                break;
            }
            at -= 1;
        }
        (None, at)
    });
    if let Some(up) = found {
        return Ok(up);
    }
    let up = m.alloc(type_word(UPVALUE), upvalue::SIZE)?;
    object::write(up, upvalue::SLOT, slot);
    object::write(up, upvalue::CLOSED, Value::NIL);
    stack.with(|st| st.open_upvalues.insert(at, Some(up)));
    Ok(up)
}

/// Closes every open upvalue of stack slot `from` or above: the value moves
/// from the stack into the upvalue.
pub(crate) fn close_upvalues(m: &mut Mutator<LoxVm>, from: usize) {
    let stack = Stack::of(m);
    while let Some(up) = stack.with(|st| st.open_upvalues.last().copied().flatten()) {
        let slot: usize = read(up, upvalue::SLOT);
        if slot < from {
            break;
        }
        let v = stack.with(|st| st.stack[slot]);
        store_value(m, up, upvalue::CLOSED, v);
        object::write(up, upvalue::SLOT, UPVALUE_CLOSED);
        stack.with(|st| st.open_upvalues.pop());
    }
}

/// `class Sub < Super`: copies the superclass's methods (and initializer)
/// into the subclass; the stack is `[superclass, subclass]`.
fn inherit(m: &mut Mutator<LoxVm>) -> Result<(), AllocError> {
    let stack = Stack::of(m);
    let methods = |stack: Stack| read_ref(stack.peek(1).to_object(), class::METHODS);
    for i in 0..table::capacity(methods(stack)) {
        // Each insertion may allocate: read the superclass's table again.
        let Some((key, method)) = methods(stack).and_then(|t| table::entry(t, i)) else {
            continue;
        };
        stack.push(method);
        stack.push(Value::object(key));
        table::set(m, Home::Field(class::METHODS))?;
        stack.pop();
        stack.pop();
    }
    let init = read_ref(stack.peek(1).to_object(), class::INIT);
    store_ref(m, stack.peek(0).to_object(), class::INIT, init);
    Ok(())
}

/// The stack trace of a runtime error, innermost frame first, as clox
/// prints it.
pub(crate) fn trace(stack: Stack) -> String {
    stack.with(|st| {
        let mut lines = String::new();
        for frame in st.frames[..st.frame_count].iter().rev() {
            let function = closure_function(active_closure(frame.closure));
            // SAFETY: `ip` is past at least one instruction of this code.
            let offset = unsafe { frame.ip.offset_from(chunk::code(function)) } as usize - 1;
            let line = chunk::line(function, offset);
            match function_name(function) {
                Some(name) => lines.push_str(&format!("[line {line}] in {}()\n", text(name))),
                None => lines.push_str(&format!("[line {line}] in script\n")),
            }
        }
        lines
    })
}
