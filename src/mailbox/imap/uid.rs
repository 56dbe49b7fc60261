//! UID arithmetic for the intake, pure and unit-tested: writing an IMAP UID set, filtering a
//! `UID SEARCH` answer to what lies above the watermark, and cutting a backlog into batches.
//!
//! Nothing here talks to a server; [`super::selected`] uses all three.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The IMAP sequence-set for `uids`, runs compressed: `[1,2,3,4,5,7,9,10,11,12]` → `1:5,7,9:12`.
/// Order and repeats in the input do not matter. Empty input gives an empty string.
#[must_use]
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = if start == end {
            write!(out, "{start}")
        } else {
            write!(out, "{start}:{end}")
        };
        i += 1;
    }
    out
}

/// The UIDs above `last_uid`, ascending. `UID SEARCH UID n:*` always answers at least the
/// highest UID in the mailbox even when it is below `n` (RFC 3501 §6.4.8: `*` is the largest
/// UID in use, and `n:*` is the range between the two), so the answer has to be filtered.
#[must_use]
pub(crate) fn uids_above(found: impl IntoIterator<Item = u32>, last_uid: u32) -> Vec<u32> {
    let mut uids: Vec<u32> = found.into_iter().filter(|&u| u > last_uid).collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Consecutive runs of `uids` of at most `max_count` messages and `max_bytes` (by `sizes`; an
/// unknown size counts as nothing, the fetch finds it again), each holding at least one UID.
/// A batch is cut only when the next message would go over `max_bytes`, so one that fills the
/// budget exactly stays whole; a single message over the budget travels alone.
#[must_use]
pub(crate) fn cut_batches(
    uids: &[u32],
    sizes: &BTreeMap<u32, u64>,
    max_count: usize,
    max_bytes: u64,
) -> Vec<Vec<u32>> {
    let mut batches: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    for &uid in uids {
        let size = sizes.get(&uid).copied().unwrap_or(0);
        if !current.is_empty() && (current.len() >= max_count || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn batches_are_cut_by_count_and_by_bytes_but_never_empty() {
        let uids: Vec<u32> = (1..=10).collect();
        let sizes: BTreeMap<u32, u64> = uids.iter().map(|&u| (u, 10)).collect();
        assert_eq!(
            cut_batches(&uids, &sizes, 4, 1000),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]
        );
        assert_eq!(
            cut_batches(&uids, &sizes, 100, 25),
            vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7, 8], vec![9, 10]]
        );
        // A message larger than the byte budget travels alone; unknown sizes count as nothing.
        let mut big = sizes.clone();
        big.insert(3, 500);
        big.remove(&6);
        assert_eq!(
            cut_batches(&uids, &big, 100, 30),
            vec![vec![1, 2], vec![3], vec![4, 5, 6, 7], vec![8, 9, 10]]
        );
        assert!(cut_batches(&[], &sizes, 4, 10).is_empty());
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 4, 5, 7, 9, 10, 11, 12]), "1:5,7,9:12");
        assert_eq!(uid_set(&[12, 9, 7, 11, 10, 1, 3, 2, 5, 4, 5]), "1:5,7,9:12");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[1, 3, 5]), "1,3,5");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn star_range_answers_are_filtered_to_new_uids() {
        // `UID SEARCH UID 8:*` on a mailbox whose highest UID is 7 answers 7.
        assert_eq!(uids_above([7], 7), Vec::<u32>::new());
        assert_eq!(uids_above([3], 7), Vec::<u32>::new());
        assert_eq!(uids_above([9, 8, 12, 7], 7), vec![8, 9, 12]);
        assert_eq!(uids_above([1, 2], 0), vec![1, 2]);
    }

    #[test]
    fn uid_sets_join_neighbours_and_repeats_into_one_range() {
        assert_eq!(uid_set(&[4, 3]), "3:4");
        assert_eq!(uid_set(&[5, 5, 6, 6, 7]), "5:7");
        assert_eq!(uid_set(&[8, 8, 8]), "8");
        assert_eq!(uid_set(&[1, 2, 4, 5]), "1:2,4:5");
    }

    #[test]
    fn star_range_answers_lose_repeats_and_nothing_lies_above_the_largest_uid() {
        assert_eq!(uids_above([9, 9, 8, 8, 12], 7), vec![8, 9, 12]);
        assert_eq!(uids_above([u32::MAX], u32::MAX), Vec::<u32>::new());
        assert_eq!(uids_above([u32::MAX], u32::MAX - 1), vec![u32::MAX]);
        assert_eq!(uids_above([], 5), Vec::<u32>::new());
    }

    #[test]
    fn a_batch_that_fills_the_byte_budget_exactly_is_not_cut() {
        let uids: Vec<u32> = (1..=5).collect();
        let sizes: BTreeMap<u32, u64> = uids.iter().map(|&u| (u, 10)).collect();
        assert_eq!(
            cut_batches(&uids, &sizes, 100, 20),
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
        assert_eq!(
            cut_batches(&uids, &sizes, 1, 1000),
            vec![vec![1], vec![2], vec![3], vec![4], vec![5]]
        );
        // With no size known, only the count cuts.
        assert_eq!(
            cut_batches(&uids, &BTreeMap::new(), 2, 1),
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
    }

    /// The UIDs a set written by [`uid_set`] stands for.
    fn expand(set: &str) -> Vec<u32> {
        if set.is_empty() {
            return Vec::new();
        }
        set.split(',')
            .flat_map(|part| match part.split_once(':') {
                Some((a, b)) => {
                    let (a, b): (u32, u32) = (a.parse().expect("start"), b.parse().expect("end"));
                    assert!(a < b, "range {part} is not ascending");
                    (a..=b).collect::<Vec<u32>>()
                }
                None => vec![part.parse().expect("uid")],
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_uid_set_stands_for_exactly_its_uids_in_the_fewest_ranges(
            uids in proptest::collection::vec(1u32..200, 0..60)
        ) {
            let set = uid_set(&uids);
            let mut want = uids.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(expand(&set), want.clone());
            // One range per run of consecutive UIDs: no two parts could have been joined.
            let runs = want.windows(2).filter(|w| w[1] != w[0] + 1).count() + usize::from(!want.is_empty());
            prop_assert_eq!(set.split(',').filter(|p| !p.is_empty()).count(), runs);
        }

        #[test]
        fn batches_keep_every_uid_in_order_and_respect_both_limits(
            sizes in proptest::collection::vec(proptest::option::of(0u64..100), 0..60),
            max_count in 1usize..8,
            max_bytes in 1u64..300,
        ) {
            let uids: Vec<u32> = (1..=u32::try_from(sizes.len()).expect("small")).collect();
            let known: BTreeMap<u32, u64> = uids
                .iter()
                .zip(&sizes)
                .filter_map(|(&u, s)| s.map(|s| (u, s)))
                .collect();
            let batches = cut_batches(&uids, &known, max_count, max_bytes);
            prop_assert_eq!(batches.concat(), uids);
            for batch in &batches {
                prop_assert!(!batch.is_empty() && batch.len() <= max_count, "{batch:?}");
                let bytes: u64 = batch.iter().filter_map(|u| known.get(u)).sum();
                prop_assert!(bytes <= max_bytes || batch.len() == 1, "{batch:?}: {bytes} bytes");
            }
        }
    }
}
