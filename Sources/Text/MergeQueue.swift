import VZQFormats

/// The merge loop shared by the SentencePiece (bigram by score) and GPT-2 (pair by rank) tokenizers: a doubly
/// linked list of symbols and a binary heap of candidate pairs, O(n log n) in the number of symbols.
///
/// `pair(a, b)` returns the merged token and its priority (lower merges first) or nil. Among equal priorities
/// the leftmost pair merges first, as in both llama.cpp and Hugging Face's BPE. Stale heap entries (a side already
/// merged into something else) are skipped when popped.
struct MergeQueue {
    private struct Entry {
        var priority: Float
        var left: Int32
        var right: Int32
        var leftID: Int32
        var rightID: Int32
        var merged: Int32

        @inline(__always) func before(_ o: Entry) -> Bool {
            priority != o.priority ? priority < o.priority : left < o.left
        }
    }

    /// Merges `ids` in place (symbols with id < 0 never merge) and returns the surviving ids in order.
    static func run(_ ids: [Int32], pair: (Int32, Int32) -> (merged: Int32, priority: Float)?) -> [Int32] {
        let n = ids.count
        if n < 2 { return ids }
        var id = ids
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        for i in 0 ..< n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap: [Entry] = []
        heap.reserveCapacity(n)

        func push(_ e: Entry) {
            heap.append(e)
            var c = heap.count - 1
            while c > 0 {
                let p = (c - 1) / 2
                guard heap[c].before(heap[p]) else { break }
                heap.swapAt(c, p)
                c = p
            }
        }
        func pop() -> Entry {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var p = 0
                let m = heap.count
                while true {
                    let l = 2 * p + 1, r = l + 1
                    var best = p
                    if l < m, heap[l].before(heap[best]) { best = l }
                    if r < m, heap[r].before(heap[best]) { best = r }
                    if best == p { break }
                    heap.swapAt(p, best)
                    p = best
                }
            }
            return top
        }
        func consider(_ l: Int32) {
            guard l >= 0 else { return }
            let r = next[Int(l)]
            guard r >= 0 else { return }
            let a = id[Int(l)], b = id[Int(r)]
            guard a >= 0, b >= 0, let m = pair(a, b) else { return }
            push(Entry(priority: m.priority, left: l, right: r, leftID: a, rightID: b, merged: m.merged))
        }

        for i in 0 ..< n - 1 { consider(Int32(i)) }
        while !heap.isEmpty {
            let e = pop()
            let l = Int(e.left), r = Int(e.right)
            // stale: the left symbol was merged away, changed, or its neighbour is no longer `right`
            guard id[l] == e.leftID, next[l] == e.right, id[r] == e.rightID else { continue }
            id[l] = e.merged
            id[r] = Int32.min  // dead
            let rn = next[r]
            next[l] = rn
            if rn >= 0 { prev[Int(rn)] = e.left }
            consider(prev[l])
            consider(e.left)
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i: Int32 = 0
        while i >= 0 {
            out.append(id[Int(i)])
            i = next[Int(i)]
        }
        return out
    }
}
