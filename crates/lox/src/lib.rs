//! Lox — the language of Robert Nystrom's *Crafting Interpreters* — as the
//! book's bytecode VM ("clox"), with every object in rtmem's collected heap:
//! the worked example of a language runtime built on rtmem.
//!
//! Use it to run Lox programs (the `lox` binary is clox's command line), or
//! read it to see how a runtime binds to rtmem:
//!
//! ```
//! use rtmem::Profile;
//! use rtmem_lox::{Status, run_source};
//!
//! let run = run_source(
//!     "class Pair { init(a, b) { this.a = a; this.b = b; } }
//!      fun sum(p) { return p.a + p.b; }
//!      print sum(Pair(1, 2.5));
//!      print \"con\" + \"cat\";
//!      print nope;",
//!     Profile::default(),
//! )
//! .unwrap();
//! assert_eq!(run.stdout, "3.5\nconcat\n");
//! assert_eq!(run.stderr, "Undefined variable 'nope'.\n[line 5] in script\n");
//! assert_eq!((run.status, run.status.exit_code()), (Status::RuntimeError, 70));
//! ```
//!
//! # How Lox lives in rtmem
//!
//! - **One memory manager, one mutator.** [`Lox::new`] builds a
//!   `rtmem::MemoryManager` from a profile and the binding [`LoxVm`], and
//!   registers one mutator whose roots ([`LoxRoots`]) are the interpreter's
//!   state: the value stack, the call frames, the open upvalues, the
//!   functions being compiled, the globals table and the `"init"` string.
//!   (Lox has one thread, so its globals are that mutator's roots; the
//!   binding's own global state is its weak tables.)
//! - **Objects** (strings, functions, closures, upvalues, classes,
//!   instances, bound methods, natives, constant arrays and hash tables) are
//!   allocated with `Mutator::alloc`; their layouts are in the `object`
//!   module's docs. Constant arrays are allocated pinned (`alloc_pinned`,
//!   the non-moving space), so a call frame caches a pointer to its
//!   function's constants. Values are NaN-boxed words; the collector sees a value
//!   slot through a temporary `Option<ObjectRef>` that the binding decodes
//!   and re-encodes. Every store of a reference into an object goes through
//!   the barrier (`write_ref`, or a store followed by `write_barrier`).
//! - **Moving collectors.** An allocation or a safepoint poll may move
//!   objects, so references are never kept in Rust locals across one: they
//!   are on the value stack or in a root, and are read back afterwards. The
//!   interpreter polls at calls and loop back-edges.
//! - **Other spaces.** Bytecode and line tables are one block of the
//!   runtime-internal space per function, freed when the function object
//!   dies (a weak table swept by `process_weak_tables`); the compiler's
//!   scratch data lives in an arena of the compiler-internal space.
//! - **Weak tables.** Interned strings are held weakly and dropped by the
//!   collector when nothing else references them.
//! - **Errors.** A full heap (the `epsilon` profile has no collector) is a
//!   Lox runtime error naming the space, never a crash.

mod binding;
mod chunk;
mod compiler;
mod intern;
mod object;
mod roots;
mod scanner;
mod table;
mod value;
mod vm;

use std::io::{BufWriter, Write};

use rtmem::{ManagerError, MemoryManager, Profile};
use rtmem_base::AllocError;
use rtmem_gc::{GcCause, Mutator};

pub use binding::{LoxCollection, LoxModel, LoxScanning, LoxVm};
pub use roots::LoxRoots;

use crate::object::{CLOSURE, NATIVE, closure, closure_size, native, store_ref, type_word};
use crate::roots::Stack;
use crate::table::Home;
use crate::value::Value;

/// How an [`interpret`](Lox::interpret) call ended (clox's `InterpretResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The program ran to its end.
    Ok,
    /// The compiler reported errors; nothing ran.
    CompileError,
    /// The program stopped with a runtime error.
    RuntimeError,
}

impl Status {
    /// The process exit code clox uses: 0, 65 or 70.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::CompileError => 65,
            Status::RuntimeError => 70,
        }
    }
}

/// A Lox interpreter: its memory manager, its one mutator, and where its
/// output goes (`O` for `print`, `E` for errors). Globals persist from one
/// [`interpret`](Lox::interpret) call to the next, as in clox's REPL.
pub struct Lox<O: Write, E: Write> {
    // Declared before `mm`: the mutator unregisters before the heap goes.
    m: Mutator<LoxVm>,
    mm: MemoryManager<LoxVm>,
    out: BufWriter<O>,
    err: E,
}

impl<O: Write, E: Write> Lox<O, E> {
    /// An interpreter whose memory is configured by `profile`, printing to
    /// `out` (buffered; flushed before errors and by [`flush`](Self::flush))
    /// and reporting errors to `err`.
    ///
    /// Errors: the profile names a collector this version does not build,
    /// or its spaces cannot be set up.
    pub fn new(profile: Profile, out: O, err: E) -> Result<Lox<O, E>, ManagerError> {
        let mm = MemoryManager::new(profile, LoxVm::default())?;
        mm.heap().vm().code.attach(mm.spaces().clone());
        let mut m = mm.register(LoxRoots::default());
        define_globals(&mut m).map_err(ManagerError::Memory)?;
        Ok(Lox {
            m,
            mm,
            out: BufWriter::new(out),
            err,
        })
    }

    /// Compiles and runs `source` as clox's `interpret` does: compile errors
    /// and runtime errors (with their stack traces) go to the error writer.
    pub fn interpret(&mut self, source: &[u8]) -> Status {
        let _ = self.out.flush();
        match compiler::compile(&mut self.m, source, &mut self.err) {
            Ok(true) => {}
            Ok(false) => return Status::CompileError,
            Err(e) => {
                self.report(&vm::out_of_memory(e), "");
                return Status::RuntimeError;
            }
        }
        if let Err(e) = call_script(&mut self.m) {
            self.report(&vm::out_of_memory(e), "");
            return Status::RuntimeError;
        }
        match vm::run(&mut self.m, &mut self.out) {
            Ok(()) => Status::Ok,
            Err(message) => {
                let trace = vm::trace(Stack::of(&mut self.m));
                self.report(&message, &trace);
                Status::RuntimeError
            }
        }
    }

    /// Prints a runtime error and its trace, and resets the stack.
    fn report(&mut self, message: &str, trace: &str) {
        let _ = self.out.flush();
        let _ = writeln!(self.err, "{message}");
        let _ = self.err.write_all(trace.as_bytes());
        let _ = self.err.flush();
        // Closures that escaped (into globals) may still hold open upvalues:
        // close them, so that they never read the stack slots being dropped.
        vm::close_upvalues(&mut self.m, 0);
        Stack::of(&mut self.m).reset();
    }

    /// The memory manager: its spaces, heap, statistics and report.
    pub fn memory_manager(&self) -> &MemoryManager<LoxVm> {
        &self.mm
    }

    /// Collects now (returns whether a collection ran: never for `epsilon`).
    pub fn collect(&mut self) -> bool {
        self.m.collect(GcCause::Explicit)
    }

    /// The buffered writer `print` writes to (for a REPL's prompt).
    pub fn output(&mut self) -> &mut BufWriter<O> {
        &mut self.out
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes the output and gives the writers back.
    pub fn into_writers(self) -> (O, E) {
        let Lox { m, mm, out, err } = self;
        drop(m);
        drop(mm);
        let out = out
            .into_inner()
            .unwrap_or_else(|e| panic!("flushing the output failed: {}", e.error()));
        (out, err)
    }
}

/// Interns `"init"` and defines the native functions as globals.
fn define_globals(m: &mut Mutator<LoxVm>) -> Result<(), AllocError> {
    let stack = Stack::of(m);
    let init = intern::intern(m, b"init")?;
    stack.with(|st| st.init_string = Some(init));
    for (index, (name, _)) in vm::NATIVES.iter().enumerate() {
        let name = intern::intern(m, name.as_bytes())?;
        stack.push(Value::object(name));
        let function = m.alloc(type_word(NATIVE), native::SIZE)?;
        object::write(function, native::INDEX, index);
        // `[value, key]` for the globals table; the name may have moved.
        let name = stack.pop();
        stack.push(Value::object(function));
        stack.push(name);
        table::set(m, Home::Globals)?;
        stack.pop();
        stack.pop();
    }
    Ok(())
}

/// Wraps the compiled script on top of the stack in a closure and pushes
/// its frame (clox's `interpret` after `compile`).
fn call_script(m: &mut Mutator<LoxVm>) -> Result<(), AllocError> {
    let stack = Stack::of(m);
    let script = m.alloc(type_word(CLOSURE), closure_size(0))?;
    let function = stack.pop();
    store_ref(m, script, closure::FUNCTION, function.as_object());
    stack.push(Value::object(script));
    stack.with(|st| {
        st.frames[0] = vm::new_frame(script, 0);
        st.frame_count = 1;
    });
    Ok(())
}

/// What a program printed and how it ended, from [`run_source`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Everything `print` wrote.
    pub stdout: String,
    /// Compile errors, or the runtime error and its stack trace.
    pub stderr: String,
    /// How the run ended.
    pub status: Status,
}

/// Runs one program in a fresh interpreter with memory configured by
/// `profile`, capturing its output.
pub fn run_source(source: &str, profile: Profile) -> Result<Output, ManagerError> {
    let mut lox = Lox::new(profile, Vec::new(), Vec::new())?;
    let status = lox.interpret(source.as_bytes());
    let (out, err) = lox.into_writers();
    Ok(Output {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        status,
    })
}
