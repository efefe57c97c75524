import CQuant

/// Milliseconds since an arbitrary start, monotonic (CQuant's clock, the one the benchmarks use).
@inline(__always) public func monotonicMilliseconds() -> Double { cq_now_seconds() * 1000 }
