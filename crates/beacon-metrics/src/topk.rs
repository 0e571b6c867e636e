//! Deterministic top-k selection.

/// The `k` best `(text, count)` pairs: count descending, then text
/// ascending (byte order). Runs in `O(n * k)` with no allocation beyond `k`.
pub(crate) fn top_k<'a>(
    items: impl Iterator<Item = (&'a str, u64)>,
    k: usize,
) -> Vec<(&'a str, u64)> {
    let mut best: Vec<(&'a str, u64)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    let better = |a: &(&str, u64), b: &(&str, u64)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
    for item in items {
        if best.len() == k && !best.last().is_some_and(|last| better(&item, last)) {
            continue;
        }
        let pos = best
            .iter()
            .position(|b| better(&item, b))
            .unwrap_or(best.len());
        best.insert(pos, item);
        best.truncate(k);
    }
    best
}
