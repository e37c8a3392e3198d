// The binary-trees program of the Computer Language Benchmarks Game,
// single-threaded, for `cargo xtask compare-jvm`: the same work and the same
// output lines as crates/rtmem/examples/binary_trees.rs (crates/testvm/src/trees.rs).
//
// A stretch tree of depth max + 1 is built, checked and dropped; a long-lived
// tree of depth max is kept through the iterations; for every even depth d from
// MIN_DEPTH to max, 1 << (max - d + MIN_DEPTH) trees of depth d are built,
// checked and dropped; then the long-lived tree is checked. The check of a
// tree is its node count.
//
// Usage: java BinaryTrees [DEPTH]   (default 16; below MIN_DEPTH + 2 is raised)

public final class BinaryTrees {
    private static final int MIN_DEPTH = 4;

    private static final class Node {
        private final Node left;
        private final Node right;

        Node(Node left, Node right) {
            this.left = left;
            this.right = right;
        }

        long check() {
            return left == null ? 1 : 1 + left.check() + right.check();
        }
    }

    private static Node build(int depth) {
        return depth == 0 ? new Node(null, null) : new Node(build(depth - 1), build(depth - 1));
    }

    public static void main(String[] args) {
        int maxDepth = args.length > 0 ? Integer.parseInt(args[0]) : 16;
        maxDepth = Math.max(maxDepth, MIN_DEPTH + 2);
        StringBuilder out = new StringBuilder();

        int stretchDepth = maxDepth + 1;
        out.append("stretch tree of depth ").append(stretchDepth)
            .append("\t check: ").append(build(stretchDepth).check()).append('\n');

        Node longLived = build(maxDepth);
        for (int depth = MIN_DEPTH; depth <= maxDepth; depth += 2) {
            long count = 1L << (maxDepth - depth + MIN_DEPTH);
            long check = 0;
            for (long i = 0; i < count; i++) {
                check += build(depth).check();
            }
            out.append(count).append("\t trees of depth ").append(depth)
                .append("\t check: ").append(check).append('\n');
        }
        out.append("long lived tree of depth ").append(maxDepth)
            .append("\t check: ").append(longLived.check()).append('\n');
        System.out.print(out);
    }
}
