//! The single-pass compiler: a Pratt parser that emits bytecode as it goes,
//! a line-by-line port of clox's `compiler.c` (same errors, same panic-mode
//! recovery, same limits).
//!
//! Memory: the compiler's scratch data — per-function locals, upvalues,
//! bytecode and line buffers, the nesting stacks — lives in one arena of
//! the compiler-internal space, dropped when compilation ends. The function
//! objects being compiled are heap objects, rooted in
//! [`VmState::compiling`](crate::roots::VmState); their constants live in a
//! heap array each function references, and a value being added as a
//! constant is pushed on the value stack while the array grows. Constant
//! arrays are pinned (allocated in the non-moving space) so that a call
//! frame can keep a raw pointer to its function's constants. A finished
//! function's bytecode and lines are copied into a code block of the
//! runtime-internal space ([`chunk`](crate::chunk)).

use std::io::Write;

use rtmem_arena::Arena;
use rtmem_arena::allocator_api2::vec::Vec as ArenaVec;
use rtmem_base::AllocError;
use rtmem_gc::{Mutator, ObjectRef};

use crate::binding::LoxVm;
use crate::chunk::op;
use crate::intern::intern;
use crate::object::{
    self, FUNCTION, VALUES, function, read, read_ref, store_ref, store_value, type_word, values,
    values_size,
};
use crate::roots::Stack;
use crate::scanner::{Scanner, Token, TokenKind};
use crate::value::Value;

type AVec<'a, T> = ArenaVec<T, &'a Arena>;

/// Locals (and upvalues) a function may have: clox's `UINT8_COUNT`.
const MAX_LOCALS: usize = 256;

/// Compiles `source` as a script. On success the script's function is
/// pushed on the value stack and the result is `Ok(true)`; `Ok(false)`
/// means compile errors, each reported on `err` as clox reports them.
/// An allocation failure ends compilation with the error.
pub(crate) fn compile(
    m: &mut Mutator<LoxVm>,
    source: &[u8],
    err: &mut dyn Write,
) -> Result<bool, AllocError> {
    let arena = m.heap().spaces().compiler_arena();
    let stack = Stack::of(m);
    let mut c = Compiler {
        stack,
        m,
        arena: &arena,
        scanner: Scanner::new(source),
        current: Token::synthetic(""),
        previous: Token::synthetic(""),
        had_error: false,
        panic_mode: false,
        fatal: None,
        err,
        functions: ArenaVec::new_in(&arena),
        classes: ArenaVec::new_in(&arena),
    };
    c.begin_function(FunctionKind::Script);
    c.advance();
    while !c.matches(TokenKind::Eof) {
        c.declaration();
    }
    c.end_function();
    let (fatal, had_error) = (c.fatal.take(), c.had_error);
    let script = stack.with(|st| {
        let script = st.compiling.pop().flatten();
        st.compiling.clear();
        script
    });
    if let Some(e) = fatal {
        return Err(e);
    }
    if had_error {
        return Ok(false);
    }
    stack.push(Value::from(script));
    Ok(true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FunctionKind {
    Function,
    Initializer,
    Method,
    Script,
}

/// Binding power, lowest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    None,
    Assignment,
    Or,
    And,
    Equality,
    Comparison,
    Term,
    Factor,
    Unary,
    Call,
    Primary,
}

impl Prec {
    fn next(self) -> Prec {
        match self {
            Prec::None => Prec::Assignment,
            Prec::Assignment => Prec::Or,
            Prec::Or => Prec::And,
            Prec::And => Prec::Equality,
            Prec::Equality => Prec::Comparison,
            Prec::Comparison => Prec::Term,
            Prec::Term => Prec::Factor,
            Prec::Factor => Prec::Unary,
            Prec::Unary => Prec::Call,
            Prec::Call | Prec::Primary => Prec::Primary,
        }
    }

    /// The precedence of `kind` as an infix operator.
    fn of(kind: TokenKind) -> Prec {
        use TokenKind as T;
        match kind {
            T::LeftParen | T::Dot => Prec::Call,
            T::Minus | T::Plus => Prec::Term,
            T::Slash | T::Star => Prec::Factor,
            T::BangEqual | T::EqualEqual => Prec::Equality,
            T::Greater | T::GreaterEqual | T::Less | T::LessEqual => Prec::Comparison,
            T::And => Prec::And,
            T::Or => Prec::Or,
            _ => Prec::None,
        }
    }
}

struct Local<'src> {
    name: &'src [u8],
    /// The scope depth, or -1 while the initializer runs.
    depth: i32,
    captured: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Upvalue {
    index: u8,
    is_local: bool,
}

/// One function being compiled (its object is `compiling[i]` for the
/// `i`-th entry of `functions`).
struct FunctionState<'src, 'a> {
    kind: FunctionKind,
    locals: AVec<'a, Local<'src>>,
    upvalues: AVec<'a, Upvalue>,
    scope_depth: i32,
    code: AVec<'a, u8>,
    lines: AVec<'a, u32>,
    constants: usize,
    arity: usize,
}

struct Compiler<'src, 'a, 'm> {
    m: &'m mut Mutator<LoxVm>,
    stack: Stack,
    arena: &'a Arena,
    scanner: Scanner<'src>,
    current: Token<'src>,
    previous: Token<'src>,
    had_error: bool,
    panic_mode: bool,
    /// The allocation failure that ended compilation.
    fatal: Option<AllocError>,
    err: &'m mut dyn Write,
    functions: AVec<'a, FunctionState<'src, 'a>>,
    /// For each enclosing class: whether it has a superclass.
    classes: AVec<'a, bool>,
}

impl<'src, 'a> Compiler<'src, 'a, '_> {
    // ---- parser plumbing -------------------------------------------------

    fn advance(&mut self) {
        self.previous = self.current;
        loop {
            self.current = self.scanner.scan_token();
            if self.current.kind != TokenKind::Error {
                break;
            }
            let message = self.current.lexeme;
            self.error_at(self.current, message);
        }
    }

    fn consume(&mut self, kind: TokenKind, message: &str) {
        if self.current.kind == kind {
            self.advance();
        } else {
            self.error_at(self.current, message.as_bytes());
        }
    }

    fn check(&self, kind: TokenKind) -> bool {
        self.current.kind == kind
    }

    fn matches(&mut self, kind: TokenKind) -> bool {
        if !self.check(kind) {
            return false;
        }
        self.advance();
        true
    }

    fn error(&mut self, message: &str) {
        self.error_at(self.previous, message.as_bytes());
    }

    fn error_at(&mut self, token: Token<'src>, message: &[u8]) {
        if self.panic_mode {
            return;
        }
        self.panic_mode = true;
        self.had_error = true;
        if self.fatal.is_some() {
            return;
        }
        // Diagnostics are best effort: a failing stderr is not a compile error.
        let _ = self.report(token, message);
    }

    fn report(&mut self, token: Token<'src>, message: &[u8]) -> std::io::Result<()> {
        write!(self.err, "[line {}] Error", token.line)?;
        match token.kind {
            TokenKind::Eof => self.err.write_all(b" at end")?,
            TokenKind::Error => {}
            _ => {
                self.err.write_all(b" at '")?;
                self.err.write_all(token.lexeme)?;
                self.err.write_all(b"'")?;
            }
        }
        self.err.write_all(b": ")?;
        self.err.write_all(message)?;
        self.err.write_all(b"\n")
    }

    /// Records an allocation failure (the first one ends compilation: later
    /// work is skipped and no more errors are reported).
    fn fail(&mut self, e: AllocError) {
        self.had_error = true;
        self.fatal.get_or_insert(e);
    }

    // ---- emitting ----------------------------------------------------------

    fn current_fn(&mut self) -> &mut FunctionState<'src, 'a> {
        self.functions
            .last_mut()
            .expect("a function is always being compiled")
    }

    fn emit(&mut self, byte: u8) {
        let line = self.previous.line;
        let f = self.current_fn();
        f.code.push(byte);
        f.lines.push(line);
    }

    fn emit2(&mut self, a: u8, b: u8) {
        self.emit(a);
        self.emit(b);
    }

    fn code_len(&mut self) -> usize {
        self.current_fn().code.len()
    }

    fn emit_loop(&mut self, loop_start: usize) {
        self.emit(op::LOOP);
        let offset = self.code_len() - loop_start + 2;
        if offset > usize::from(u16::MAX) {
            self.error("Loop body too large.");
        }
        self.emit2((offset >> 8) as u8, offset as u8);
    }

    fn emit_jump(&mut self, instruction: u8) -> usize {
        self.emit(instruction);
        self.emit2(0xff, 0xff);
        self.code_len() - 2
    }

    fn patch_jump(&mut self, offset: usize) {
        let jump = self.code_len() - offset - 2;
        if jump > usize::from(u16::MAX) {
            self.error("Too much code to jump over.");
        }
        let code = &mut self.current_fn().code;
        code[offset] = (jump >> 8) as u8;
        code[offset + 1] = jump as u8;
    }

    fn emit_return(&mut self) {
        if self.current_fn().kind == FunctionKind::Initializer {
            self.emit2(op::GET_LOCAL, 0);
        } else {
            self.emit(op::NIL);
        }
        self.emit(op::RETURN);
    }

    /// The object of the function being compiled (`None` after an
    /// allocation failure).
    fn function_object(&self) -> Option<ObjectRef> {
        let depth = self.functions.len() - 1;
        self.stack.with(|st| st.compiling[depth])
    }

    /// Appends `value` to the current function's constants; returns its
    /// index (which may exceed 255: the caller reports that).
    fn add_constant(&mut self, mut value: Value) -> usize {
        if self.fatal.is_some() {
            return 0;
        }
        let count = self.current_fn().constants;
        let array = self
            .function_object()
            .and_then(|f| read_ref(f, function::CONSTANTS));
        let capacity = array.map_or(0, |a| read::<usize>(a, values::LEN));
        if count == capacity {
            // Keep the value rooted while the array grows.
            self.stack.push(value);
            let grown = (capacity * 2).max(8);
            let new = match self.m.alloc_pinned(type_word(VALUES), values_size(grown)) {
                Ok(new) => new,
                Err(e) => {
                    self.stack.pop();
                    self.fail(e);
                    return 0;
                }
            };
            object::write(new, values::LEN, grown);
            let f = self.function_object().expect("no allocation failed");
            if let Some(old) = read_ref(f, function::CONSTANTS) {
                for i in 0..count {
                    let v = read(old, values::ITEMS + 8 * i);
                    store_value(self.m, new, values::ITEMS + 8 * i, v);
                }
            }
            store_ref(self.m, f, function::CONSTANTS, Some(new));
            // The allocation may have moved the value.
            value = self.stack.pop();
        }
        let f = self.function_object().expect("no allocation failed");
        let array = read_ref(f, function::CONSTANTS).expect("the constants were just made");
        store_value(self.m, array, values::ITEMS + 8 * count, value);
        self.current_fn().constants += 1;
        count
    }

    fn make_constant(&mut self, value: Value) -> u8 {
        let index = self.add_constant(value);
        if index > usize::from(u8::MAX) {
            self.error("Too many constants in one chunk.");
            return 0;
        }
        index as u8
    }

    fn emit_constant(&mut self, value: Value) {
        let index = self.make_constant(value);
        self.emit2(op::CONSTANT, index);
    }

    /// The interned string of `bytes` as a value (nil after an allocation
    /// failure).
    fn string_value(&mut self, bytes: &[u8]) -> Value {
        if self.fatal.is_some() {
            return Value::NIL;
        }
        match intern(self.m, bytes) {
            Ok(s) => Value::object(s),
            Err(e) => {
                self.fail(e);
                Value::NIL
            }
        }
    }

    fn identifier_constant(&mut self, name: &[u8]) -> u8 {
        let value = self.string_value(name);
        self.make_constant(value)
    }

    // ---- functions and scopes ---------------------------------------------

    fn begin_function(&mut self, kind: FunctionKind) {
        let object = if self.fatal.is_some() {
            None
        } else {
            match self.m.alloc(type_word(FUNCTION), function::SIZE) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.fail(e);
                    None
                }
            }
        };
        self.stack.with(|st| st.compiling.push(object));
        let mut locals = ArenaVec::with_capacity_in(8, self.arena);
        locals.push(Local {
            name: if kind == FunctionKind::Function {
                b""
            } else {
                b"this"
            },
            depth: 0,
            captured: false,
        });
        self.functions.push(FunctionState {
            kind,
            locals,
            upvalues: ArenaVec::new_in(self.arena),
            scope_depth: 0,
            code: ArenaVec::with_capacity_in(64, self.arena),
            lines: ArenaVec::with_capacity_in(64, self.arena),
            constants: 0,
            arity: 0,
        });
        if kind != FunctionKind::Script {
            let name = self.string_value(self.previous.lexeme);
            if let Some(f) = self.function_object() {
                store_ref(self.m, f, function::NAME, name.as_object());
            }
        }
    }

    /// Finishes the current function: its object (still rooted in
    /// `compiling`) gets its code block; returns its upvalues.
    fn end_function(&mut self) -> AVec<'a, Upvalue> {
        self.emit_return();
        let f = self.functions.pop().expect("a function is being compiled");
        let object = self.stack.with(|st| *st.compiling.last().expect("rooted"));
        if let Some(object) = object.filter(|_| !self.had_error) {
            object::write(object, function::ARITY, f.arity as u32);
            object::write(object, function::UPVALUES, f.upvalues.len() as u32);
            let vm = self.m.heap().vm();
            if let Err(e) = vm.code.install(object, &f.code, &f.lines) {
                self.fail(e);
            }
        }
        f.upvalues
    }

    fn begin_scope(&mut self) {
        self.current_fn().scope_depth += 1;
    }

    fn end_scope(&mut self) {
        let f = self.current_fn();
        f.scope_depth -= 1;
        let depth = f.scope_depth;
        while let Some(local) = self.current_fn().locals.last() {
            if local.depth <= depth {
                break;
            }
            let captured = local.captured;
            self.emit(if captured { op::CLOSE_UPVALUE } else { op::POP });
            self.current_fn().locals.pop();
        }
    }

    fn resolve_local(&mut self, depth: usize, name: &[u8]) -> Option<u8> {
        let found = self.functions[depth]
            .locals
            .iter()
            .rposition(|l| l.name == name)?;
        if self.functions[depth].locals[found].depth == -1 {
            self.error("Can't read local variable in its own initializer.");
        }
        Some(found as u8)
    }

    fn add_upvalue(&mut self, depth: usize, index: u8, is_local: bool) -> u8 {
        let up = Upvalue { index, is_local };
        let upvalues = &mut self.functions[depth].upvalues;
        if let Some(i) = upvalues.iter().position(|&u| u == up) {
            return i as u8;
        }
        if upvalues.len() == MAX_LOCALS {
            self.error("Too many closure variables in function.");
            return 0;
        }
        upvalues.push(up);
        (upvalues.len() - 1) as u8
    }

    fn resolve_upvalue(&mut self, depth: usize, name: &[u8]) -> Option<u8> {
        if depth == 0 {
            return None;
        }
        if let Some(local) = self.resolve_local(depth - 1, name) {
            self.functions[depth - 1].locals[usize::from(local)].captured = true;
            return Some(self.add_upvalue(depth, local, true));
        }
        let upvalue = self.resolve_upvalue(depth - 1, name)?;
        Some(self.add_upvalue(depth, upvalue, false))
    }

    fn add_local(&mut self, name: &'src [u8]) {
        if self.current_fn().locals.len() == MAX_LOCALS {
            self.error("Too many local variables in function.");
            return;
        }
        self.current_fn().locals.push(Local {
            name,
            depth: -1,
            captured: false,
        });
    }

    fn declare_variable(&mut self) {
        let name = self.previous.lexeme;
        let f = self.current_fn();
        if f.scope_depth == 0 {
            return;
        }
        let scope = f.scope_depth;
        let duplicate = f
            .locals
            .iter()
            .rev()
            .take_while(|l| l.depth == -1 || l.depth >= scope)
            .any(|l| l.name == name);
        if duplicate {
            self.error("Already a variable with this name in this scope.");
        }
        self.add_local(name);
    }

    fn parse_variable(&mut self, message: &str) -> u8 {
        self.consume(TokenKind::Identifier, message);
        self.declare_variable();
        if self.current_fn().scope_depth > 0 {
            return 0;
        }
        self.identifier_constant(self.previous.lexeme)
    }

    fn mark_initialized(&mut self) {
        let f = self.current_fn();
        if f.scope_depth == 0 {
            return;
        }
        let depth = f.scope_depth;
        f.locals.last_mut().expect("a local was declared").depth = depth;
    }

    fn define_variable(&mut self, global: u8) {
        if self.current_fn().scope_depth > 0 {
            self.mark_initialized();
            return;
        }
        self.emit2(op::DEFINE_GLOBAL, global);
    }

    fn argument_list(&mut self) -> u8 {
        let mut count: u8 = 0;
        if !self.check(TokenKind::RightParen) {
            loop {
                self.expression();
                if count == u8::MAX {
                    self.error("Can't have more than 255 arguments.");
                }
                count = count.wrapping_add(1);
                if !self.matches(TokenKind::Comma) {
                    break;
                }
            }
        }
        self.consume(TokenKind::RightParen, "Expect ')' after arguments.");
        count
    }

    // ---- expressions ---------------------------------------------------------

    fn expression(&mut self) {
        self.parse_precedence(Prec::Assignment);
    }

    fn parse_precedence(&mut self, precedence: Prec) {
        self.advance();
        let can_assign = precedence <= Prec::Assignment;
        if !self.prefix(self.previous.kind, can_assign) {
            self.error("Expect expression.");
            return;
        }
        while precedence <= Prec::of(self.current.kind) {
            self.advance();
            self.infix(self.previous.kind, can_assign);
        }
        if can_assign && self.matches(TokenKind::Equal) {
            self.error("Invalid assignment target.");
        }
    }

    /// Runs the prefix rule of `kind`; `false` if it has none.
    fn prefix(&mut self, kind: TokenKind, can_assign: bool) -> bool {
        use TokenKind as T;
        match kind {
            T::LeftParen => self.grouping(),
            T::Minus | T::Bang => self.unary(),
            T::Identifier => self.named_variable(self.previous, can_assign),
            T::String => {
                let lexeme = self.previous.lexeme;
                let value = self.string_value(&lexeme[1..lexeme.len() - 1]);
                self.emit_constant(value);
            }
            T::Number => {
                let text = std::str::from_utf8(self.previous.lexeme).expect("digits are ASCII");
                let n: f64 = text.parse().expect("the scanner makes valid numbers");
                self.emit_constant(Value::number(n));
            }
            T::False => self.emit(op::FALSE),
            T::Nil => self.emit(op::NIL),
            T::True => self.emit(op::TRUE),
            T::Super => self.super_(),
            T::This => self.this_(),
            _ => return false,
        }
        true
    }

    fn infix(&mut self, kind: TokenKind, can_assign: bool) {
        use TokenKind as T;
        match kind {
            T::LeftParen => {
                let count = self.argument_list();
                self.emit2(op::CALL, count);
            }
            T::Dot => self.dot(can_assign),
            T::And => {
                let end = self.emit_jump(op::JUMP_IF_FALSE);
                self.emit(op::POP);
                self.parse_precedence(Prec::And);
                self.patch_jump(end);
            }
            T::Or => {
                let else_jump = self.emit_jump(op::JUMP_IF_FALSE);
                let end = self.emit_jump(op::JUMP);
                self.patch_jump(else_jump);
                self.emit(op::POP);
                self.parse_precedence(Prec::Or);
                self.patch_jump(end);
            }
            _ => self.binary(kind),
        }
    }

    fn binary(&mut self, operator: TokenKind) {
        self.parse_precedence(Prec::of(operator).next());
        use TokenKind as T;
        match operator {
            T::BangEqual => self.emit2(op::EQUAL, op::NOT),
            T::EqualEqual => self.emit(op::EQUAL),
            T::Greater => self.emit(op::GREATER),
            T::GreaterEqual => self.emit2(op::LESS, op::NOT),
            T::Less => self.emit(op::LESS),
            T::LessEqual => self.emit2(op::GREATER, op::NOT),
            T::Plus => self.emit(op::ADD),
            T::Minus => self.emit(op::SUBTRACT),
            T::Star => self.emit(op::MULTIPLY),
            T::Slash => self.emit(op::DIVIDE),
            _ => unreachable!("{operator:?} has no infix rule"),
        }
    }

    fn grouping(&mut self) {
        self.expression();
        self.consume(TokenKind::RightParen, "Expect ')' after expression.");
    }

    fn unary(&mut self) {
        let operator = self.previous.kind;
        self.parse_precedence(Prec::Unary);
        self.emit(if operator == TokenKind::Bang {
            op::NOT
        } else {
            op::NEGATE
        });
    }

    fn dot(&mut self, can_assign: bool) {
        self.consume(TokenKind::Identifier, "Expect property name after '.'.");
        let name = self.identifier_constant(self.previous.lexeme);
        if can_assign && self.matches(TokenKind::Equal) {
            self.expression();
            self.emit2(op::SET_PROPERTY, name);
        } else if self.matches(TokenKind::LeftParen) {
            let count = self.argument_list();
            self.emit2(op::INVOKE, name);
            self.emit(count);
        } else {
            self.emit2(op::GET_PROPERTY, name);
        }
    }

    fn named_variable(&mut self, name: Token<'src>, can_assign: bool) {
        let depth = self.functions.len() - 1;
        let (get, set, arg) = if let Some(local) = self.resolve_local(depth, name.lexeme) {
            (op::GET_LOCAL, op::SET_LOCAL, local)
        } else if let Some(upvalue) = self.resolve_upvalue(depth, name.lexeme) {
            (op::GET_UPVALUE, op::SET_UPVALUE, upvalue)
        } else {
            let global = self.identifier_constant(name.lexeme);
            (op::GET_GLOBAL, op::SET_GLOBAL, global)
        };
        if can_assign && self.matches(TokenKind::Equal) {
            self.expression();
            self.emit2(set, arg);
        } else {
            self.emit2(get, arg);
        }
    }

    fn super_(&mut self) {
        match self.classes.last() {
            None => self.error("Can't use 'super' outside of a class."),
            Some(false) => self.error("Can't use 'super' in a class with no superclass."),
            Some(true) => {}
        }
        self.consume(TokenKind::Dot, "Expect '.' after 'super'.");
        self.consume(TokenKind::Identifier, "Expect superclass method name.");
        let name = self.identifier_constant(self.previous.lexeme);
        self.named_variable(Token::synthetic("this"), false);
        if self.matches(TokenKind::LeftParen) {
            let count = self.argument_list();
            self.named_variable(Token::synthetic("super"), false);
            self.emit2(op::SUPER_INVOKE, name);
            self.emit(count);
        } else {
            self.named_variable(Token::synthetic("super"), false);
            self.emit2(op::GET_SUPER, name);
        }
    }

    fn this_(&mut self) {
        if self.classes.is_empty() {
            self.error("Can't use 'this' outside of a class.");
            return;
        }
        self.named_variable(self.previous, false);
    }

    // ---- statements ----------------------------------------------------------

    fn declaration(&mut self) {
        if self.matches(TokenKind::Class) {
            self.class_declaration();
        } else if self.matches(TokenKind::Fun) {
            self.fun_declaration();
        } else if self.matches(TokenKind::Var) {
            self.var_declaration();
        } else {
            self.statement();
        }
        if self.panic_mode {
            self.synchronize();
        }
    }

    fn synchronize(&mut self) {
        self.panic_mode = false;
        use TokenKind as T;
        while self.current.kind != T::Eof {
            if self.previous.kind == T::Semicolon {
                return;
            }
            if matches!(
                self.current.kind,
                T::Class | T::Fun | T::Var | T::For | T::If | T::While | T::Print | T::Return
            ) {
                return;
            }
            self.advance();
        }
    }

    fn class_declaration(&mut self) {
        self.consume(TokenKind::Identifier, "Expect class name.");
        let class_name = self.previous;
        let name_constant = self.identifier_constant(class_name.lexeme);
        self.declare_variable();
        self.emit2(op::CLASS, name_constant);
        self.define_variable(name_constant);
        self.classes.push(false);
        if self.matches(TokenKind::Less) {
            self.consume(TokenKind::Identifier, "Expect superclass name.");
            self.named_variable(self.previous, false);
            if class_name.lexeme == self.previous.lexeme {
                self.error("A class can't inherit from itself.");
            }
            self.begin_scope();
            self.add_local(b"super");
            self.define_variable(0);
            self.named_variable(class_name, false);
            self.emit(op::INHERIT);
            *self.classes.last_mut().expect("pushed above") = true;
        }
        self.named_variable(class_name, false);
        self.consume(TokenKind::LeftBrace, "Expect '{' before class body.");
        while !self.check(TokenKind::RightBrace) && !self.check(TokenKind::Eof) {
            self.method();
        }
        self.consume(TokenKind::RightBrace, "Expect '}' after class body.");
        self.emit(op::POP);
        if self.classes.pop() == Some(true) {
            self.end_scope();
        }
    }

    fn method(&mut self) {
        self.consume(TokenKind::Identifier, "Expect method name.");
        let constant = self.identifier_constant(self.previous.lexeme);
        let kind = if self.previous.lexeme == b"init" {
            FunctionKind::Initializer
        } else {
            FunctionKind::Method
        };
        self.function(kind);
        self.emit2(op::METHOD, constant);
    }

    fn fun_declaration(&mut self) {
        let global = self.parse_variable("Expect function name.");
        self.mark_initialized();
        self.function(FunctionKind::Function);
        self.define_variable(global);
    }

    fn function(&mut self, kind: FunctionKind) {
        self.begin_function(kind);
        self.begin_scope();
        self.consume(TokenKind::LeftParen, "Expect '(' after function name.");
        if !self.check(TokenKind::RightParen) {
            loop {
                self.current_fn().arity += 1;
                if self.current_fn().arity > 255 {
                    self.error_at(self.current, b"Can't have more than 255 parameters.");
                }
                let constant = self.parse_variable("Expect parameter name.");
                self.define_variable(constant);
                if !self.matches(TokenKind::Comma) {
                    break;
                }
            }
        }
        self.consume(TokenKind::RightParen, "Expect ')' after parameters.");
        self.consume(TokenKind::LeftBrace, "Expect '{' before function body.");
        self.block();
        let upvalues = self.end_function();
        // The function is still rooted in `compiling` while it becomes a
        // constant of the enclosing function.
        let object = self.stack.with(|st| *st.compiling.last().expect("rooted"));
        let constant = self.make_constant(Value::from(object));
        self.stack.with(|st| st.compiling.pop());
        self.emit2(op::CLOSURE, constant);
        for up in upvalues.iter() {
            self.emit2(u8::from(up.is_local), up.index);
        }
    }

    fn var_declaration(&mut self) {
        let global = self.parse_variable("Expect variable name.");
        if self.matches(TokenKind::Equal) {
            self.expression();
        } else {
            self.emit(op::NIL);
        }
        self.consume(
            TokenKind::Semicolon,
            "Expect ';' after variable declaration.",
        );
        self.define_variable(global);
    }

    fn statement(&mut self) {
        if self.matches(TokenKind::Print) {
            self.expression();
            self.consume(TokenKind::Semicolon, "Expect ';' after value.");
            self.emit(op::PRINT);
        } else if self.matches(TokenKind::For) {
            self.for_statement();
        } else if self.matches(TokenKind::If) {
            self.if_statement();
        } else if self.matches(TokenKind::Return) {
            self.return_statement();
        } else if self.matches(TokenKind::While) {
            self.while_statement();
        } else if self.matches(TokenKind::LeftBrace) {
            self.begin_scope();
            self.block();
            self.end_scope();
        } else {
            self.expression_statement();
        }
    }

    fn block(&mut self) {
        while !self.check(TokenKind::RightBrace) && !self.check(TokenKind::Eof) {
            self.declaration();
        }
        self.consume(TokenKind::RightBrace, "Expect '}' after block.");
    }

    fn expression_statement(&mut self) {
        self.expression();
        self.consume(TokenKind::Semicolon, "Expect ';' after expression.");
        self.emit(op::POP);
    }

    fn for_statement(&mut self) {
        self.begin_scope();
        self.consume(TokenKind::LeftParen, "Expect '(' after 'for'.");
        if self.matches(TokenKind::Semicolon) {
            // No initializer.
        } else if self.matches(TokenKind::Var) {
            self.var_declaration();
        } else {
            self.expression_statement();
        }
        let mut loop_start = self.code_len();
        let mut exit_jump = None;
        if !self.matches(TokenKind::Semicolon) {
            self.expression();
            self.consume(TokenKind::Semicolon, "Expect ';' after loop condition.");
            exit_jump = Some(self.emit_jump(op::JUMP_IF_FALSE));
            self.emit(op::POP);
        }
        if !self.matches(TokenKind::RightParen) {
            let body_jump = self.emit_jump(op::JUMP);
            let increment_start = self.code_len();
            self.expression();
            self.emit(op::POP);
            self.consume(TokenKind::RightParen, "Expect ')' after for clauses.");
            self.emit_loop(loop_start);
            loop_start = increment_start;
            self.patch_jump(body_jump);
        }
        self.statement();
        self.emit_loop(loop_start);
        if let Some(exit) = exit_jump {
            self.patch_jump(exit);
            self.emit(op::POP);
        }
        self.end_scope();
    }

    fn if_statement(&mut self) {
        self.consume(TokenKind::LeftParen, "Expect '(' after 'if'.");
        self.expression();
        self.consume(TokenKind::RightParen, "Expect ')' after condition.");
        let then_jump = self.emit_jump(op::JUMP_IF_FALSE);
        self.emit(op::POP);
        self.statement();
        let else_jump = self.emit_jump(op::JUMP);
        self.patch_jump(then_jump);
        self.emit(op::POP);
        if self.matches(TokenKind::Else) {
            self.statement();
        }
        self.patch_jump(else_jump);
    }

    fn return_statement(&mut self) {
        if self.current_fn().kind == FunctionKind::Script {
            self.error("Can't return from top-level code.");
        }
        if self.matches(TokenKind::Semicolon) {
            self.emit_return();
        } else {
            if self.current_fn().kind == FunctionKind::Initializer {
                self.error("Can't return a value from an initializer.");
            }
            self.expression();
            self.consume(TokenKind::Semicolon, "Expect ';' after return value.");
            self.emit(op::RETURN);
        }
    }

    fn while_statement(&mut self) {
        let loop_start = self.code_len();
        self.consume(TokenKind::LeftParen, "Expect '(' after 'while'.");
        self.expression();
        self.consume(TokenKind::RightParen, "Expect ')' after condition.");
        let exit_jump = self.emit_jump(op::JUMP_IF_FALSE);
        self.emit(op::POP);
        self.statement();
        self.emit_loop(loop_start);
        self.patch_jump(exit_jump);
        self.emit(op::POP);
    }
}
