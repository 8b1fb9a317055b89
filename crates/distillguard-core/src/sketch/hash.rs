//! Stable 64-bit hashing: FNV-1a over bytes, finished with the SplitMix64 mixer.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// SplitMix64 finaliser: spreads FNV's weak low bits over the whole word.
#[inline]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Incremental FNV-1a state, so the tokenizer can hash a word while it scans it.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(FNV_OFFSET)
    }
}

impl Fnv {
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.0 ^= u64::from(byte);
        self.0 = self.0.wrapping_mul(FNV_PRIME);
    }

    #[inline]
    pub fn finish(self) -> u64 {
        mix64(self.0)
    }
}

/// Plain FNV-1a, without the finaliser: where the value itself is fixed by what it picks, so it
/// must never change (an account's shard and bus partition, the simulator's prompt choice).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut state = Fnv::default();
    for byte in bytes {
        state.push(*byte);
    }
    state.0
}

/// Stable hash of a byte string (usable in `const` context for built-in word lists).
pub const fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    mix64(hash)
}

/// Fast stable hash of a whole string, eight bytes at a time: for identities (system prompts,
/// user agents, payment fingerprints) that can be long and only need equality.
pub fn fast_hash(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        hash = (hash ^ word)
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .rotate_left(31);
    }
    let mut tail = 0u64;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(*byte) << (8 * i);
    }
    mix64(hash ^ tail)
}

/// Combines an ordered pair of hashes (shingles, sequences).
#[inline]
pub const fn combine(a: u64, b: u64) -> u64 {
    mix64(a.rotate_left(17) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_and_const_hashing_agree() {
        let mut fnv = Fnv::default();
        for byte in b"reasoning" {
            fnv.push(*byte);
        }
        assert_eq!(fnv.finish(), stable_hash(b"reasoning"));
        assert_ne!(stable_hash(b"step"), stable_hash(b"stop"));
        assert_ne!(fast_hash(b"abcdefgh1"), fast_hash(b"abcdefgh2"));
        assert_ne!(fast_hash(b"abc"), fast_hash(b"abc\0"));
    }

    #[test]
    fn stable_hash_is_pinned_so_checkpoints_stay_valid() {
        // Changing the hash would silently invalidate every stored checkpoint.
        assert_eq!(stable_hash(b""), mix64(FNV_OFFSET));
        assert_eq!(stable_hash(b"a"), mix64(0xaf63_dc4c_8601_ec8c));
    }

    #[test]
    fn plain_fnv1a_is_pinned_so_shards_and_partitions_never_move() {
        // The published FNV-1a 64 test vectors: an account's shard and bus partition hang on
        // these values, across versions and nodes.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
