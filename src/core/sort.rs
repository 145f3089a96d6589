//! One stable sort for the whole crate.
//!
//! `slice::sort_by` is compiled anew for every element type and comparator,
//! a few kilobytes of WebAssembly each. Here the sorting itself is a merge
//! sort of indices behind a `&dyn` comparator, compiled once; per call site
//! only the small wrapper that applies the order is generic. The lists the
//! crate sorts are short or already nearly in order, and the extra
//! indirection costs nothing that shows.

use std::cmp::Ordering;

/// Sorts `items` by `compare`, keeping equal items in their order (stable).
pub fn sort_by<T>(items: &mut Vec<T>, compare: impl Fn(&T, &T) -> Ordering) {
    if items.len() < 2 {
        return;
    }
    let order = {
        let slice: &[T] = items;
        sorted_indices(slice.len(), &|a, b| compare(&slice[a], &slice[b]))
    };
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(
        order
            .into_iter()
            .filter_map(|at| slots.get_mut(at).and_then(Option::take)),
    );
}

/// Sorts `items` by the key `key` gives, stable.
pub fn sort_by_key<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    sort_by(items, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `items` in their own order, stable.
pub fn sort<T: Ord>(items: &mut Vec<T>) {
    sort_by(items, T::cmp);
}

/// `collect()` into a `BTreeMap` sorts the pairs first, with a copy of the
/// standard sort per pair type; inserting them one by one needs only the
/// map's own code, which is there anyway.
pub trait CollectMap<K: Ord, V>: Iterator<Item = (K, V)> + Sized {
    /// The pairs as a map (a later pair of a key wins, as with `collect`).
    fn collect_map<M: Default + Extend<(K, V)>>(self) -> M {
        let mut map = M::default();
        map.extend(self);
        map
    }
}

impl<K: Ord, V, I: Iterator<Item = (K, V)>> CollectMap<K, V> for I {}

/// `0..n` ordered by `compare`: a bottom-up merge sort, stable (on a tie
/// the left run goes first). Already sorted runs cost one comparison per
/// element and level.
fn sorted_indices(n: usize, compare: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut from: Vec<usize> = (0..n).collect();
    let mut to: Vec<usize> = vec![0; n];
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = start.saturating_add(width).min(n);
            let end = start.saturating_add(width.saturating_mul(2)).min(n);
            let (mut left, mut right) = (start, mid);
            for slot in &mut to[start..end] {
                let take_left = left < mid
                    && (right >= end || compare(from[right], from[left]) != Ordering::Less);
                if take_left {
                    *slot = from[left];
                    left += 1;
                } else {
                    *slot = from[right];
                    right += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut from, &mut to);
        width = width.saturating_mul(2);
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_small_cases() {
        let mut empty: Vec<u32> = Vec::new();
        sort(&mut empty);
        assert!(empty.is_empty());
        let mut one = vec![3];
        sort(&mut one);
        assert_eq!(one, [3]);
        let mut v = vec![5, 1, 4, 1, 5, 9, 2, 6];
        sort(&mut v);
        assert_eq!(v, [1, 1, 2, 4, 5, 5, 6, 9]);
        let mut desc = vec!["b", "c", "a"];
        sort_by(&mut desc, |a, b| b.cmp(a));
        assert_eq!(desc, ["c", "b", "a"]);
    }

    #[test]
    fn equal_keys_keep_their_order() {
        let mut v: Vec<(u8, usize)> = [3u8, 1, 3, 2, 1, 3].iter().copied().zip(0..).collect();
        sort_by_key(&mut v, |(k, _)| *k);
        assert_eq!(v, [(1, 1), (1, 4), (2, 3), (3, 0), (3, 2), (3, 5)]);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_as_the_standard_stable_sort(v in proptest::collection::vec((0u8..8, any::<u16>()), 0..300)) {
            let mut ours = v.clone();
            sort_by_key(&mut ours, |(k, _)| *k);
            let mut std_sorted = v;
            std_sorted.sort_by_key(|(k, _)| *k);
            prop_assert_eq!(ours, std_sorted);
        }
    }
}
