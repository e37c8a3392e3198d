//! How Lox uses rtmem's memory: allocation-heavy programs run in a bounded
//! heap, dead functions give their code blocks back to the runtime-internal
//! space, interned strings are weak, and a full heap is a runtime error.

use rtmem::{GcKind, Profile};
use rtmem_base::SpaceType;
use rtmem_lox::{Lox, Status};

/// The default profile, collecting from 1 MiB on, so that a program that
/// keeps little live data never needs much more.
fn small_trigger(gc: GcKind) -> Profile {
    let mut p = Profile {
        gc,
        ..Profile::default()
    };
    p.trigger.min_heap = 1 << 20;
    p.heap.young = 1 << 20;
    p
}

fn collectors() -> impl Iterator<Item = GcKind> {
    GcKind::ALL.into_iter().filter(|&k| k != GcKind::Epsilon)
}

/// Runs `source`, expecting `stdout`; returns (object bytes allocated,
/// heap peak).
fn run_bounded(source: &str, stdout: &str, profile: Profile) -> (u64, usize) {
    let mut lox = Lox::new(profile, Vec::new(), Vec::new()).unwrap();
    assert_eq!(lox.interpret(source.as_bytes()), Status::Ok);
    let report = lox.memory_manager().report();
    let allocated: u64 = SpaceType::MANAGED
        .iter()
        .map(|&s| report.memory.space(s).bytes_allocated)
        .sum();
    let (out, err) = lox.into_writers();
    assert_eq!(String::from_utf8(err).unwrap(), "");
    assert_eq!(String::from_utf8(out).unwrap(), stdout);
    (allocated, report.heap_peak_bytes)
}

const TREES: &str = "
class Node {
  init(l, r) { this.l = l; this.r = r; }
  count() { if (this.l == nil) return 1; return 1 + this.l.count() + this.r.count(); }
}
fun tree(d) { if (d == 0) return Node(nil, nil); return Node(tree(d - 1), tree(d - 1)); }
var total = 0;
for (var i = 0; i < 40; i = i + 1) total = total + tree(10).count();
print total;
";

const CLOSURES: &str = "
fun compose(f, g) { fun h(x) { return f(g(x)); } return h; }
fun inc(x) { return x + 1; }
var sum = 0;
for (var i = 0; i < 3000; i = i + 1) {
  var f = inc;
  for (var j = 0; j < 10; j = j + 1) f = compose(f, inc);
  sum = sum + f(i);
}
print sum;
";

const STRINGS: &str = "
var s = \"\";
for (var i = 0; i < 3000; i = i + 1) s = s + \"ab\";
var n = 0;
for (var i = 0; i < 3000; i = i + 1) { var t = s + \"c\"; n = n + 1; }
print n;
";

#[test]
fn allocation_heavy_programs_run_in_a_bounded_heap() {
    let programs = [
        (TREES, "81880\n"),
        (CLOSURES, "4.5315e+06\n"),
        (STRINGS, "3000\n"),
    ];
    for gc in collectors() {
        for (source, stdout) in programs {
            let (allocated, peak) = run_bounded(source, stdout, small_trigger(gc));
            assert!(
                allocated > 2 << 20 && allocated > 2 * peak as u64,
                "{gc}: the program allocates much ({allocated} B)"
            );
            assert!(
                peak < 3 << 20,
                "{gc}: heap peak {peak} B for {allocated} B allocated:\n{source}"
            );
        }
    }
}

#[test]
fn dead_functions_free_their_code_blocks() {
    for gc in collectors() {
        let mut lox = Lox::new(small_trigger(gc), Vec::new(), Vec::new()).unwrap();
        let internal_live = |lox: &Lox<Vec<u8>, Vec<u8>>| {
            lox.memory_manager()
                .snapshot()
                .space(SpaceType::RuntimeInternal)
                .live_bytes()
        };
        lox.collect();
        let (blocks_before, bytes_before) = (
            lox.memory_manager().heap().vm().code_blocks(),
            internal_live(&lox),
        );
        // The script and the functions it defines in a block die when it ends.
        let source = "{ fun f(a) { return a + 1; } fun g() { return f(1) + f(2); } print g(); }";
        assert_eq!(lox.interpret(source.as_bytes()), Status::Ok);
        let blocks_during = lox.memory_manager().heap().vm().code_blocks();
        assert_eq!(blocks_during, blocks_before + 3, "script, f and g");
        assert!(internal_live(&lox) > bytes_before);
        assert!(lox.collect());
        assert_eq!(
            lox.memory_manager().heap().vm().code_blocks(),
            blocks_before
        );
        assert_eq!(internal_live(&lox), bytes_before, "{gc}: every block freed");
        // A function kept in a global keeps its code.
        assert_eq!(lox.interpret(b"fun kept() { return 42; }"), Status::Ok);
        assert!(lox.collect());
        assert_eq!(
            lox.memory_manager().heap().vm().code_blocks(),
            blocks_before + 1
        );
        assert_eq!(lox.interpret(b"print kept();"), Status::Ok);
        let (out, _) = lox.into_writers();
        assert_eq!(String::from_utf8(out).unwrap(), "5\n42\n");
    }
}

#[test]
fn interned_strings_are_dropped_when_unreachable() {
    for gc in collectors() {
        let mut lox = Lox::new(small_trigger(gc), Vec::new(), Vec::new()).unwrap();
        let interned =
            |lox: &Lox<Vec<u8>, Vec<u8>>| lox.memory_manager().heap().vm().interned_strings();
        lox.collect();
        let before = interned(&lox);
        let source = "var keep = \"k\" + \"eep\"; { var s = \"\"; for (var i = 0; i < 100; i = i + 1) s = s + \"x\"; }";
        assert_eq!(lox.interpret(source.as_bytes()), Status::Ok);
        assert!(interned(&lox) > before + 100);
        lox.collect();
        // "keep" survives (a global holds it), and so do the global's name
        // and the literals of functions still alive (none).
        let after = interned(&lox);
        assert!(after <= before + 2, "{before} before, {after} after");
        assert_eq!(lox.interpret(b"print keep == \"keep\";"), Status::Ok);
        let (out, _) = lox.into_writers();
        assert_eq!(String::from_utf8(out).unwrap(), "true\n");
    }
}

#[test]
fn a_full_epsilon_heap_is_a_runtime_error_naming_the_space() {
    let mut p = Profile::from_name("epsilon").unwrap();
    for space in [SpaceType::Object, SpaceType::Humongous] {
        let budget = &mut p.spaces[space.index()];
        budget.initial = 4 << 20;
        budget.max = 4 << 20;
        budget.growth_percent = 0;
    }
    let source = "var s = \"\";\nwhile (true) {\n  s = s + \"xy\";\n}\n";
    let mut lox = Lox::new(p, Vec::new(), Vec::new()).unwrap();
    assert_eq!(lox.interpret(source.as_bytes()), Status::RuntimeError);
    assert_eq!(Status::RuntimeError.exit_code(), 70);
    let (_, err) = lox.into_writers();
    let err = String::from_utf8(err).unwrap();
    let mut lines = err.lines();
    let message = lines.next().unwrap();
    assert!(
        message.starts_with("Out of memory: ") && message.contains(" space is full"),
        "{err}"
    );
    assert_eq!(lines.next(), Some("[line 3] in script"));
}

#[test]
fn closures_escaping_a_runtime_error_keep_their_values() {
    let mut lox = Lox::new(Profile::default(), Vec::new(), Vec::new()).unwrap();
    let source =
        "var f;\nfun g() { var x = \"kept\"; fun h() { return x; } f = h; nil(); }\ng();\n";
    assert_eq!(lox.interpret(source.as_bytes()), Status::RuntimeError);
    lox.collect();
    assert_eq!(lox.interpret(b"var y = \"other\"; print f();"), Status::Ok);
    let (out, err) = lox.into_writers();
    assert_eq!(String::from_utf8(out).unwrap(), "kept\n");
    assert!(
        String::from_utf8(err)
            .unwrap()
            .starts_with("Can only call functions and classes.\n[line 2] in g()\n")
    );
}
