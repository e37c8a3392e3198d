//! The binary-trees workload of the Computer Language Benchmarks Game, over
//! several ways of managing the trees' memory.
//!
//! [`binary_trees`] is the program: a stretch tree of depth `max + 1` built,
//! checked and dropped; a long-lived tree of depth `max` kept through the
//! iterations; for every even step `d` in `MIN_DEPTH..=max`,
//! `1 << (max - d + MIN_DEPTH)` trees of depth `d` built, checked and dropped;
//! then the long-lived tree checked. It returns the sum of all checks, where
//! the check of a tree is its node count (`2^(d+1) - 1` for depth `d`). Every
//! node built is checked exactly once, so the total is also the number of
//! nodes allocated ([`expected_total`] gives it in closed form).
//!
//! How the trees are allocated and freed is a [`TreeHeap`] (the driver and the
//! trait are `rtmem_testvm::trees`', shared with rtmem's `binary_trees`
//! example): one implementation per memory manager. The anchors here build
//! bottom-up with the one [`bottom_up`] recursion and check with the one
//! generic [`check`]; rtmem's collectors run the test runtime's
//! [`PairTrees`]. Each has a [`RunTrees`] entry in [`IMPLEMENTATIONS`], which
//! the `gc` benchmark and the tests below iterate over.
//!
//! ```
//! use rtmem_benches::trees::{BoxHeap, binary_trees, expected_total};
//!
//! let total = binary_trees(&mut BoxHeap::default(), 6);
//! assert_eq!(total, expected_total(6));
//! ```

use std::ops::Deref;
use std::rc::Rc;

use bumpalo::Bump;
use gc_arena::{Arena, Collect, Gc, Mutation, Rootable};
use rtmem::{GcKind, MemoryManager, Profile};
use rtmem_testvm::TestVm;
use rtmem_testvm::trees::PairTrees;
pub use rtmem_testvm::trees::{MIN_DEPTH, TreeHeap, expected_total};

/// One implementation of the whole program: runs [`binary_trees`] for a
/// maximum depth on a fresh heap of its kind and returns the total of all
/// checks.
pub type RunTrees = fn(max_depth: u32) -> u64;

/// Every implementation of the workload, by its benchmark function name.
pub const IMPLEMENTATIONS: &[(&str, RunTrees)] = &[
    ("box", run_box),
    ("rc", run_rc),
    ("gc_arena", run_gc_arena),
    ("bumpalo", run_bumpalo),
    ("rtmem_stw", run_rtmem_stw),
    ("rtmem_gen", run_rtmem_gen),
    ("rtmem_gen_concurrent", run_rtmem_gen_concurrent),
];

/// Runs the binary-trees program for `max_depth` on `heap` without printing,
/// and returns the total of all checks.
pub fn binary_trees<H: TreeHeap + ?Sized>(heap: &mut H, max_depth: u32) -> u64 {
    rtmem_testvm::trees::binary_trees(heap, max_depth, |_| {})
}

/// A binary tree node whose children are both present or both absent.
pub trait Tree {
    /// The two children, or `None` for a leaf.
    fn children(&self) -> Option<(&Self, &Self)>;
}

/// The check of a tree: its node count.
pub fn check<T: Tree + ?Sized>(tree: &T) -> u64 {
    1 + tree
        .children()
        .map_or(0, |(left, right)| check(left) + check(right))
}

/// Builds a tree of `depth` bottom-up: `node` allocates one node from its
/// children (`None` for a leaf) and returns the pointer to it.
pub fn bottom_up<P>(depth: u32, node: &mut impl FnMut(Option<(P, P)>) -> P) -> P {
    let children = (depth > 0).then(|| (bottom_up(depth - 1, node), bottom_up(depth - 1, node)));
    node(children)
}

/// A node type whose trees are owned through a smart pointer and freed when it
/// is dropped: [`BoxNode`] and [`RcNode`].
pub trait OwnedNode: Tree + Sized {
    /// The pointer that owns a node.
    type Ptr: Deref<Target = Self>;

    /// Allocates a node with `children`.
    fn alloc(children: Option<(Self::Ptr, Self::Ptr)>) -> Self::Ptr;
}

/// A node of a tree owned through `Box`es (the system allocator).
pub struct BoxNode {
    left: Option<Box<BoxNode>>,
    right: Option<Box<BoxNode>>,
}

impl Tree for BoxNode {
    #[inline]
    fn children(&self) -> Option<(&Self, &Self)> {
        self.left.as_deref().zip(self.right.as_deref())
    }
}

impl OwnedNode for BoxNode {
    type Ptr = Box<BoxNode>;

    #[inline]
    fn alloc(children: Option<(Box<BoxNode>, Box<BoxNode>)>) -> Box<BoxNode> {
        let (left, right) = children.unzip();
        Box::new(BoxNode { left, right })
    }
}

/// A node of a tree owned through reference-counted `Rc`s.
pub struct RcNode {
    left: Option<Rc<RcNode>>,
    right: Option<Rc<RcNode>>,
}

impl Tree for RcNode {
    #[inline]
    fn children(&self) -> Option<(&Self, &Self)> {
        self.left.as_deref().zip(self.right.as_deref())
    }
}

impl OwnedNode for RcNode {
    type Ptr = Rc<RcNode>;

    #[inline]
    fn alloc(children: Option<(Rc<RcNode>, Rc<RcNode>)>) -> Rc<RcNode> {
        let (left, right) = children.unzip();
        Rc::new(RcNode { left, right })
    }
}

/// A heap of owned trees: each temporary tree is freed node by node when
/// dropped, the kept tree when the heap is.
pub struct OwnedHeap<N: OwnedNode> {
    kept: Option<N::Ptr>,
}

/// Trees of `Option<Box<Node>>` children over the system allocator.
pub type BoxHeap = OwnedHeap<BoxNode>;

/// Trees of `Option<Rc<Node>>` children.
pub type RcHeap = OwnedHeap<RcNode>;

impl<N: OwnedNode> Default for OwnedHeap<N> {
    fn default() -> Self {
        OwnedHeap { kept: None }
    }
}

impl<N: OwnedNode> OwnedHeap<N> {
    fn build(depth: u32) -> N::Ptr {
        bottom_up(depth, &mut N::alloc)
    }
}

impl<N: OwnedNode> TreeHeap for OwnedHeap<N> {
    fn temporary(&mut self, depth: u32) -> u64 {
        check(&*Self::build(depth))
    }

    fn keep(&mut self, depth: u32) {
        self.kept = Some(Self::build(depth));
    }

    fn check_kept(&mut self) -> u64 {
        check(self.kept.as_deref().expect("check_kept before keep"))
    }
}

/// A node of a tree in a gc-arena [`Arena`].
#[derive(Collect)]
#[collect(no_drop)]
pub struct GcNode<'gc> {
    left: Option<Gc<'gc, GcNode<'gc>>>,
    right: Option<Gc<'gc, GcNode<'gc>>>,
}

impl Tree for GcNode<'_> {
    #[inline]
    fn children(&self) -> Option<(&Self, &Self)> {
        self.left.as_deref().zip(self.right.as_deref())
    }
}

impl<'gc> GcNode<'gc> {
    fn build(mc: &Mutation<'gc>, depth: u32) -> Gc<'gc, GcNode<'gc>> {
        bottom_up(depth, &mut |children: Option<(_, _)>| {
            let (left, right) = children.unzip();
            Gc::new(mc, GcNode { left, right })
        })
    }
}

/// Allocation debt (in `Gc`s, the unit of gc-arena 0.7's pacing) above which
/// [`GcArenaHeap`] pays it with `collect_debt`: the granularity piccolo, the
/// Lua VM gc-arena was written for, uses between its `mutate` calls.
pub const GC_ARENA_DEBT_THRESHOLD: f64 = 1024.0;

/// The arena's root: the long-lived tree, once built.
type GcRoot = Rootable![Option<Gc<'_, GcNode<'_>>>];

/// Trees in one gc-arena [`Arena`] with its default pacing, used the way its
/// documentation recommends: each tree is built and checked inside one
/// `mutate` call, the long-lived tree is stored in the arena's root, and
/// between calls the arena collects incrementally whenever its allocation debt
/// passes [`GC_ARENA_DEBT_THRESHOLD`].
pub struct GcArenaHeap {
    arena: Arena<GcRoot>,
}

impl GcArenaHeap {
    /// An empty arena.
    pub fn new() -> GcArenaHeap {
        GcArenaHeap {
            arena: Arena::new(|_| None),
        }
    }

    fn pay_debt(&mut self) {
        if self.arena.metrics().allocation_debt() > GC_ARENA_DEBT_THRESHOLD {
            self.arena.collect_debt();
        }
    }
}

impl Default for GcArenaHeap {
    fn default() -> Self {
        GcArenaHeap::new()
    }
}

impl TreeHeap for GcArenaHeap {
    fn temporary(&mut self, depth: u32) -> u64 {
        let check = self.arena.mutate(|mc, _| check(&*GcNode::build(mc, depth)));
        self.pay_debt();
        check
    }

    fn keep(&mut self, depth: u32) {
        self.arena
            .mutate_root(|mc, root| *root = Some(GcNode::build(mc, depth)));
        self.pay_debt();
    }

    fn check_kept(&mut self) -> u64 {
        self.arena
            .mutate(|_, root| check(root.as_deref().expect("check_kept before keep")))
    }
}

/// A node of a tree in a `bumpalo::Bump`.
pub struct BumpNode<'b> {
    left: Option<&'b BumpNode<'b>>,
    right: Option<&'b BumpNode<'b>>,
}

impl Tree for BumpNode<'_> {
    #[inline]
    fn children(&self) -> Option<(&Self, &Self)> {
        self.left.zip(self.right)
    }
}

impl<'b> BumpNode<'b> {
    fn build(bump: &'b Bump, depth: u32) -> &'b BumpNode<'b> {
        bottom_up(depth, &mut |children: Option<(_, _)>| {
            let (left, right) = children.unzip();
            &*bump.alloc(BumpNode { left, right })
        })
    }
}

/// Trees in `bumpalo::Bump`s, freed by resetting the whole bump: the lower
/// bound of allocation with no collection at all. Each temporary tree is built
/// in one scratch bump, reset after its check; the stretch tree gets a bump of
/// its own, dropped after its check; the kept tree lives in a bump the caller
/// owns.
pub struct BumpaloHeap<'k> {
    kept_in: &'k Bump,
    kept: Option<&'k BumpNode<'k>>,
    scratch: Bump,
}

impl<'k> BumpaloHeap<'k> {
    /// A heap that keeps its long-lived tree in `kept_in`.
    pub fn new(kept_in: &'k Bump) -> BumpaloHeap<'k> {
        BumpaloHeap {
            kept_in,
            kept: None,
            scratch: Bump::new(),
        }
    }
}

impl TreeHeap for BumpaloHeap<'_> {
    fn temporary(&mut self, depth: u32) -> u64 {
        let check = check(BumpNode::build(&self.scratch, depth));
        self.scratch.reset();
        check
    }

    fn stretch(&mut self, depth: u32) -> u64 {
        check(BumpNode::build(&Bump::new(), depth))
    }

    fn keep(&mut self, depth: u32) {
        self.kept = Some(BumpNode::build(self.kept_in, depth));
    }

    fn check_kept(&mut self) -> u64 {
        check(self.kept.expect("check_kept before keep"))
    }
}

/// [`binary_trees`] on a fresh [`BoxHeap`].
pub fn run_box(max_depth: u32) -> u64 {
    binary_trees(&mut BoxHeap::default(), max_depth)
}

/// [`binary_trees`] on a fresh [`RcHeap`].
pub fn run_rc(max_depth: u32) -> u64 {
    binary_trees(&mut RcHeap::default(), max_depth)
}

/// [`binary_trees`] on a fresh [`GcArenaHeap`].
pub fn run_gc_arena(max_depth: u32) -> u64 {
    binary_trees(&mut GcArenaHeap::new(), max_depth)
}

/// [`binary_trees`] on rtmem's stop-the-world mark-sweep collector (the
/// `balanced` profile with `gc = "stw"`), trees of test-runtime pairs.
pub fn run_rtmem_stw(max_depth: u32) -> u64 {
    run_rtmem("balanced", GcKind::Stw, max_depth)
}

/// [`binary_trees`] on a fresh [`MemoryManager`] of the `throughput`
/// profile (the generational collector, `gen`).
pub fn run_rtmem_gen(max_depth: u32) -> u64 {
    run_rtmem("throughput", GcKind::Gen, max_depth)
}

/// [`binary_trees`] on a fresh [`MemoryManager`] of the `balanced` profile
/// (the default): `gen-concurrent`.
pub fn run_rtmem_gen_concurrent(max_depth: u32) -> u64 {
    run_rtmem("balanced", GcKind::GenConcurrent, max_depth)
}

fn run_rtmem(profile: &str, gc: GcKind, max_depth: u32) -> u64 {
    let mut profile = Profile::from_name(profile).expect("the built-in profile is valid");
    profile.gc = gc;
    let mm = MemoryManager::new(profile, TestVm::default()).expect("a memory manager");
    binary_trees(
        &mut PairTrees::new(mm.register(Default::default())),
        max_depth,
    )
}

/// [`binary_trees`] on a fresh [`BumpaloHeap`].
pub fn run_bumpalo(max_depth: u32) -> u64 {
    let kept_in = Bump::new();
    binary_trees(&mut BumpaloHeap::new(&kept_in), max_depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_of_depth_d_has_2_pow_d_plus_1_minus_1_nodes() {
        for depth in 0..8 {
            let expected = (1 << (depth + 1)) - 1;
            assert_eq!(check(&*BoxHeap::build(depth)), expected, "depth {depth}");
            let bump = Bump::new();
            assert_eq!(check(BumpNode::build(&bump, depth)), expected);
        }
    }

    #[test]
    fn expected_total_follows_the_program() {
        // Depth 6: stretch tree of depth 7 (255 nodes), long-lived tree of
        // depth 6 (127), 64 trees of depth 4 (31 each), 16 of depth 6.
        assert_eq!(expected_total(6), 255 + 127 + 64 * 31 + 16 * 127);
        assert_eq!(expected_total(6), 4398);
        // Small depths are raised to MIN_DEPTH + 2, as in the original.
        assert_eq!(expected_total(2), expected_total(6));
    }

    #[test]
    fn every_implementation_returns_the_same_correct_total() {
        for max_depth in [6, 8] {
            for &(name, run) in IMPLEMENTATIONS {
                assert_eq!(
                    run(max_depth),
                    expected_total(max_depth),
                    "{name} at depth {max_depth}"
                );
            }
        }
    }

    /// A heap that records the program's calls, to check their order and depths.
    #[derive(Default)]
    struct Recorder(Vec<(&'static str, u32)>);

    impl TreeHeap for Recorder {
        fn temporary(&mut self, depth: u32) -> u64 {
            self.0.push(("temporary", depth));
            0
        }
        fn stretch(&mut self, depth: u32) -> u64 {
            self.0.push(("stretch", depth));
            0
        }
        fn keep(&mut self, depth: u32) {
            self.0.push(("keep", depth));
        }
        fn check_kept(&mut self) -> u64 {
            self.0.push(("check_kept", 0));
            0
        }
    }

    #[test]
    fn the_program_stretches_keeps_iterates_then_checks_the_kept_tree() {
        let mut heap = Recorder::default();
        binary_trees(&mut heap, 6);
        let calls = heap.0;
        assert_eq!(calls[0], ("stretch", 7));
        assert_eq!(calls[1], ("keep", 6));
        assert_eq!(calls.last(), Some(&("check_kept", 0)));
        let middle = &calls[2..calls.len() - 1];
        assert_eq!(middle.len(), 64 + 16);
        assert!(middle[..64].iter().all(|&c| c == ("temporary", 4)));
        assert!(middle[64..].iter().all(|&c| c == ("temporary", 6)));
    }

    #[test]
    fn gc_arena_collects_the_temporary_trees_and_keeps_the_rooted_one() {
        let mut heap = GcArenaHeap::new();
        heap.keep(6);
        for _ in 0..200 {
            heap.temporary(6);
        }
        // 200 trees of 127 nodes were allocated; with collection the live
        // count stays far below that, and the rooted tree survives it.
        let live = heap.arena.metrics().total_gc_count();
        assert!(live < 20 * 127, "{live} Gcs live");
        assert_eq!(heap.check_kept(), 127);
        heap.arena.finish_cycle();
        assert_eq!(heap.check_kept(), 127);
    }
}
