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
}
