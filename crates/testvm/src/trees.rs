//! The binary-trees program of the Computer Language Benchmarks Game, as the
//! driver every memory manager runs ([`TreeHeap`], [`binary_trees`]) and as
//! trees of test-runtime pairs on rtmem's heap ([`PairTrees`]).
//!
//! The program: a stretch tree of depth `max + 1` built, checked and
//! dropped; a long-lived tree of depth `max` kept through the iterations;
//! for every even step `d` in `MIN_DEPTH..=max`, `1 << (max - d + MIN_DEPTH)`
//! trees of depth `d` built, checked and dropped; then the long-lived tree
//! checked. The check of a tree is its node count, so the sum of all checks
//! is also the number of nodes allocated ([`expected_total`]).
//!
//! ```
//! use rtmem_testvm::trees::{Line, binary_trees, expected_total, PairTrees};
//! # use std::sync::Arc;
//! # use rtmem_gc::{GcConfig, Heap};
//! # use rtmem_spaces::{Spaces, SpacesConfig};
//! # let spaces = Arc::new(Spaces::new(SpacesConfig::default()).unwrap());
//! # let heap = Heap::new(spaces, GcConfig::default(), rtmem_testvm::TestVm::default()).unwrap();
//! let mut trees = PairTrees::new(heap.register(Default::default()));
//! let mut lines = Vec::new();
//! let total = binary_trees(&mut trees, 6, |line| lines.push(line.to_string()));
//! assert_eq!(total, expected_total(6));
//! assert_eq!(lines[0], "stretch tree of depth 7\t check: 255");
//! assert_eq!(lines[1], "64\t trees of depth 4\t check: 1984");
//! ```

use std::fmt;

use rtmem_gc::{Mutator, ObjectRef};

use crate::{PAIR, TestMutator, TestVm, WORD, check, slot};

/// The depth of the smallest trees built by the iterations.
pub const MIN_DEPTH: u32 = 4;

/// A memory manager as the binary-trees program sees it: it builds trees of
/// a given depth, checks them, and frees (or lets its collector reclaim) the
/// temporary ones.
///
/// [`binary_trees`] calls [`stretch`](TreeHeap::stretch) once, then
/// [`keep`](TreeHeap::keep) once, then [`temporary`](TreeHeap::temporary)
/// many times, then [`check_kept`](TreeHeap::check_kept) once. A garbage
/// collected heap roots the kept tree and collects whenever it likes.
pub trait TreeHeap {
    /// Builds a tree of `depth`, checks it, and lets it die; returns the check.
    fn temporary(&mut self, depth: u32) -> u64;

    /// Builds the stretch tree of `depth`, checks it, and lets it die;
    /// returns the check. The same as [`temporary`](TreeHeap::temporary)
    /// unless the heap places the stretch tree somewhere else.
    fn stretch(&mut self, depth: u32) -> u64 {
        self.temporary(depth)
    }

    /// Builds the long-lived tree of `depth` and keeps it alive until the
    /// heap is dropped.
    fn keep(&mut self, depth: u32);

    /// The check of the tree built by [`keep`](TreeHeap::keep).
    ///
    /// # Panics
    /// If no tree was kept.
    fn check_kept(&mut self) -> u64;
}

/// One line of the program's output; `Display` prints it as the Benchmarks
/// Game does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// The stretch tree's check.
    Stretch {
        /// Its depth.
        depth: u32,
        /// Its check.
        check: u64,
    },
    /// The trees of one depth.
    Iterations {
        /// How many trees.
        count: u64,
        /// Their depth.
        depth: u32,
        /// The sum of their checks.
        check: u64,
    },
    /// The long-lived tree's check.
    LongLived {
        /// Its depth.
        depth: u32,
        /// Its check.
        check: u64,
    },
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Line::Stretch { depth, check } => {
                write!(f, "stretch tree of depth {depth}\t check: {check}")
            }
            Line::Iterations {
                count,
                depth,
                check,
            } => write!(f, "{count}\t trees of depth {depth}\t check: {check}"),
            Line::LongLived { depth, check } => {
                write!(f, "long lived tree of depth {depth}\t check: {check}")
            }
        }
    }
}

/// Runs the binary-trees program for `max_depth` on `heap`, handing each
/// output line to `line`, and returns the total of all checks.
///
/// Like the Benchmarks Game program, a `max_depth` below `MIN_DEPTH + 2` is
/// raised to it.
pub fn binary_trees<H: TreeHeap + ?Sized>(
    heap: &mut H,
    max_depth: u32,
    mut line: impl FnMut(Line),
) -> u64 {
    let max_depth = max_depth.max(MIN_DEPTH + 2);
    let check = heap.stretch(max_depth + 1);
    line(Line::Stretch {
        depth: max_depth + 1,
        check,
    });
    let mut total = check;
    heap.keep(max_depth);
    for depth in (MIN_DEPTH..=max_depth).step_by(2) {
        let count = iterations(max_depth, depth);
        let check = (0..count).map(|_| heap.temporary(depth)).sum();
        line(Line::Iterations {
            count,
            depth,
            check,
        });
        total += check;
    }
    let check = heap.check_kept();
    line(Line::LongLived {
        depth: max_depth,
        check,
    });
    total + check
}

/// The total [`binary_trees`] returns for `max_depth`, from the node count
/// of a tree of depth `d`, `2^(d+1) - 1`, rather than from any tree.
pub fn expected_total(max_depth: u32) -> u64 {
    let max_depth = max_depth.max(MIN_DEPTH + 2);
    let nodes = |depth: u32| (1u64 << (depth + 1)) - 1;
    let iterated: u64 = (MIN_DEPTH..=max_depth)
        .step_by(2)
        .map(|depth| iterations(max_depth, depth) * nodes(depth))
        .sum();
    nodes(max_depth + 1) + nodes(max_depth) + iterated
}

/// How many trees of `depth` the program builds for `max_depth`.
fn iterations(max_depth: u32, depth: u32) -> u64 {
    1 << (max_depth - depth + MIN_DEPTH)
}

/// Trees of [`PAIR`]s on an rtmem heap, built by one mutator. The kept tree
/// lives in the mutator's root stack; a node under construction is rooted
/// while its children are allocated and read back from its root slot
/// afterwards, so the trees are correct under a moving collector too.
pub struct PairTrees {
    mutator: Mutator<TestVm>,
    kept: Option<usize>,
}

impl PairTrees {
    /// Trees built by `mutator`.
    pub fn new(mutator: Mutator<TestVm>) -> PairTrees {
        PairTrees {
            mutator,
            kept: None,
        }
    }

    /// The mutator.
    pub fn mutator(&mut self) -> &mut Mutator<TestVm> {
        &mut self.mutator
    }

    /// Builds a tree of `depth` (a leaf for 0), top-down.
    ///
    /// # Panics
    /// If the heap is out of memory (the message names the space).
    pub fn build(&mut self, depth: u32) -> ObjectRef {
        let m = &mut self.mutator;
        let node = m
            .alloc(PAIR, 3 * WORD)
            .unwrap_or_else(|e| panic!("binary trees: {e}"));
        if depth == 0 {
            return node;
        }
        let at = m.push_root(Some(node));
        let left = self.build(depth - 1);
        let m = &mut self.mutator;
        let node = m.root(at).expect("rooted");
        // SAFETY: `node` is a live pair (rooted); slot 1 is its left child.
        unsafe { m.write_ref(node, WORD, Some(left)) };
        let right = self.build(depth - 1);
        let m = &mut self.mutator;
        let node = m.root(at).expect("rooted");
        // SAFETY: as above; slot 2 is its right child.
        unsafe { m.write_ref(node, 2 * WORD, Some(right)) };
        m.truncate_roots(at);
        node
    }

    /// The check of the tree at `tree`: its node count.
    ///
    /// # Panics
    /// If `tree` is not a pair of the heap.
    pub fn check(&self, tree: ObjectRef) -> u64 {
        check(&self.mutator, tree, Some(PAIR));
        count(tree)
    }
}

/// The node count of a tree of pairs built by [`PairTrees::build`].
fn count(node: ObjectRef) -> u64 {
    match (*slot(node, 1), *slot(node, 2)) {
        (Some(left), Some(right)) => 1 + count(left) + count(right),
        _ => 1,
    }
}

impl TreeHeap for PairTrees {
    fn temporary(&mut self, depth: u32) -> u64 {
        let tree = self.build(depth);
        self.check(tree)
    }

    fn keep(&mut self, depth: u32) {
        let tree = self.build(depth);
        self.kept = Some(self.mutator.push_root(Some(tree)));
    }

    fn check_kept(&mut self) -> u64 {
        let at = self.kept.expect("check_kept before keep");
        let tree = self.mutator.root(at).expect("the kept tree is rooted");
        self.check(tree)
    }
}
