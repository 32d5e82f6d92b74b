//! Single-range requests (RFC 9110 §14), pure.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Serve the whole representation with 200 (no Range, or one we ignore).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decide how to answer a `Range` header value for a representation of `len` bytes.
pub fn decide_range(header: Option<&str>, len: u64) -> RangeDecision {
    let _ = (header, len);
    todo!()
}
