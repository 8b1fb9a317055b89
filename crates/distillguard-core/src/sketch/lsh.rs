//! Locality-sensitive band keys over a one-permutation MinHash signature.
//!
//! A prompt's signature (`text::PromptFeatures::signature`: per bin, the smallest 16-bit hash of
//! the word bigrams falling into it) estimates the bigram Jaccard similarity of two prompts as
//! the share of equal bins. Cutting the signature into `bands` of `rows` bins and hashing each
//! band gives keys two prompts share with probability about `1 − (1 − s^rows)^bands` at
//! similarity `s`: with 8 bins as 2 bands of 4, 0.65 at `s` = 0.8 (an item re-asked with another
//! augmentation suffix), 0.12 at 0.5 and under 0.02 at 0.3 (two prompts cut from one template
//! with different fills). The linker posts these keys, so near-duplicate prompts sent by
//! different accounts meet without any pairwise comparison (Broder 1997; Leskovec et al.,
//! *Mining of Massive Datasets*, ch. 3).

use super::hash::{combine, mix64};

/// Bins that hold no bigram (`u16::MAX`): a band with one of them says nothing.
const EMPTY: u16 = u16::MAX;

/// The band keys of a signature whose bands are all filled, `rows` bins each; a band with an
/// empty bin yields no key. Keys of different band positions never collide by construction.
pub fn band_keys(signature: &[u16], rows: usize) -> impl Iterator<Item = u64> + '_ {
    signature
        .chunks_exact(rows.max(1))
        .enumerate()
        .filter(|(_, band)| !band.contains(&EMPTY))
        .map(|(position, band)| {
            let key = band.iter().fold(mix64(position as u64 + 1), |key, bin| {
                combine(key, u64::from(*bin))
            });
            mix64(key)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bands_give_equal_keys_and_one_changed_bin_changes_only_its_band() {
        let a = [1u16, 2, 3, 4, 5, 6, 7, 8];
        let mut b = a;
        b[6] = 99;
        let ka: Vec<u64> = band_keys(&a, 4).collect();
        let kb: Vec<u64> = band_keys(&b, 4).collect();
        assert_eq!(ka.len(), 2);
        assert_eq!(ka[0], kb[0]);
        assert_ne!(ka[1], kb[1]);
    }

    #[test]
    fn bands_with_an_empty_bin_yield_no_key() {
        let signature = [1u16, 2, 3, EMPTY, 5, 6, 7, 8];
        assert_eq!(band_keys(&signature, 4).count(), 1);
    }

    #[test]
    fn the_same_bins_in_another_band_position_give_another_key() {
        let signature = [1u16, 2, 3, 4, 1, 2, 3, 4];
        let keys: Vec<u64> = band_keys(&signature, 4).collect();
        assert_ne!(keys[0], keys[1]);
    }
}
