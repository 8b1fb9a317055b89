//! One pass over a prompt: the cheap per-event text features the detectors need.
//!
//! Words are runs of ASCII letters/digits, lowercased; punctuation and spacing are ignored, so
//! `"Explain  X!"` and `"explain x"` share a fingerprint. A prompt with any non-ASCII byte takes
//! the Unicode path instead ([`unicode_words`]): words by the Unicode word-boundary rules (UAX
//! #29), lowercased by Unicode case rules, and in Chinese, Japanese and Korean text (no spaces
//! between words, or particles glued to them) overlapping character bigrams as the words. The
//! ASCII path allocates nothing; the Unicode path allocates only to lowercase for the phrase
//! lexicon of CJK reasoning demands.
//!
//! - `fingerprint`: hash of the normalised word sequence (exact-repeat detection, HLL of prompts).
//! - `prefix_key` / `suffix_key`: the prompt's skeleton ends — first 4 and last 3 words, with
//!   every word containing a digit masked to one slot token. Templated traffic keeps one end
//!   fixed while the variable part changes; see `docs/detectors.md` ("templating").
//! - `signature`: one-permutation MinHash (8 bins) over word bigrams, for "edited re-send"
//!   detection (two prompts sharing at least half their bins are near-duplicates).
//! - `content`: hashes of the subject words (4+ letters, not a function or instruction word),
//!   from which the account measures vocabulary richness, leaving out its own frame words (see
//!   [`FrameWords`]).
//! - `reasoning`: the prompt asks for step-by-step or complete reasoning.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::sketch::hash::{combine, mix64, stable_hash};

const WORD_SEED: u64 = 0x243f_6a88_85a3_08d3;
const WORD_MULTIPLIER: u64 = 0xff51_afd7_ed55_8ccd;

/// Hash of one lowercased word: bytes are packed eight at a time into a `u64` and folded with one
/// multiply per eight bytes (a per-byte multiply chain is the tokenizer's bottleneck otherwise).
/// `const` so the built-in word lists hash exactly like the scanner.
pub const fn word_hash(word: &[u8]) -> u64 {
    let mut state = WordHasher::new();
    let mut i = 0;
    while i < word.len() {
        state = state.push(word[i].to_ascii_lowercase());
        i += 1;
    }
    state.finish()
}

#[derive(Clone, Copy)]
struct WordHasher {
    hash: u64,
    pending: u64,
    pending_len: u32,
    len: u32,
}

impl WordHasher {
    const fn new() -> Self {
        Self {
            hash: WORD_SEED,
            pending: 0,
            pending_len: 0,
            len: 0,
        }
    }

    #[inline(always)]
    const fn push(mut self, byte: u8) -> Self {
        self.pending = (self.pending << 8) | byte as u64;
        self.pending_len += 1;
        self.len += 1;
        if self.pending_len == 8 {
            self.hash = (self.hash ^ self.pending)
                .wrapping_mul(WORD_MULTIPLIER)
                .rotate_left(29);
            self.pending = 0;
            self.pending_len = 0;
        }
        self
    }

    #[inline(always)]
    const fn finish(self) -> u64 {
        mix64(self.hash ^ self.pending ^ ((self.len as u64) << 56))
    }
}

/// A 2,048-bit filter in front of a sorted hash list: most words miss it and skip the search.
struct HashSetFilter {
    bits: [u64; 32],
    sorted: Vec<u64>,
}

impl HashSetFilter {
    fn new(mut hashes: Vec<u64>) -> Self {
        hashes.sort_unstable();
        hashes.dedup();
        let mut bits = [0u64; 32];
        for h in &hashes {
            let bit = (h >> 53) as usize;
            bits[bit / 64] |= 1 << (bit % 64);
        }
        Self {
            bits,
            sorted: hashes,
        }
    }

    #[inline(always)]
    fn contains(&self, hash: u64) -> bool {
        let bit = (hash >> 53) as usize;
        self.bits[bit / 64] & (1 << (bit % 64)) != 0 && self.sorted.binary_search(&hash).is_ok()
    }
}

/// Bins of the near-duplicate signature.
pub const SIGNATURE_BINS: usize = 8;
const PREFIX_WORDS: usize = 4;
const SUFFIX_WORDS: usize = 3;
const DIGIT_SLOT: u64 = stable_hash(b"<num>");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptFeatures {
    pub fingerprint: u64,
    pub words: u32,
    pub prefix_key: u64,
    pub suffix_key: u64,
    pub signature: [u16; SIGNATURE_BINS],
    pub reasoning: bool,
    /// Content-word hashes (first `MAX_CONTENT_WORDS`), for the account's frame-word counts.
    pub content: [u32; MAX_CONTENT_WORDS],
    pub content_len: u8,
}

/// Content words of one prompt fed back into the account's frame-word counts.
pub const MAX_CONTENT_WORDS: usize = 24;
const FRAME_SLOTS: usize = 128;
/// Prompts an account must have sent before its frequent words count as frame words.
const FRAME_MIN_PROMPTS: u32 = 8;

/// Per-account word counts that find the account's own "frame" (template) words: a direct-mapped
/// table of 128 counters over content-word hashes. A word in at least half the account's prompts
/// is frame, not topic. Unrelated words sharing a slot add noise of about (content words per
/// prompt / 128) per prompt, far below one half.
///
/// The counters are a short list of the used slots while the account has sent few prompts (the
/// table is 256 bytes; a few prompts fill a few dozen slots), the table after: the same counts
/// either way. Checkpoints hold the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameWords {
    #[serde(with = "slots")]
    counts: FrameCounts,
    prompts: u32,
}

/// Used slots kept as a list before the table is allocated.
const SPARSE_FRAME_SLOTS: usize = 64;

#[derive(Debug, Clone)]
enum FrameCounts {
    /// The used slots as a 128-bit map (16 bytes, little-endian) followed by their counts (1 to
    /// 255), a byte each in slot order; empty while no slot is used.
    Sparse(Box<[u8]>),
    Dense(Box<[u16; FRAME_SLOTS]>),
}

/// The bitmap of used slots of a sparse list.
fn used_slots(sparse: &[u8]) -> u128 {
    sparse.get(..16).map_or(0, |map| {
        u128::from_le_bytes(map.try_into().expect("16 bytes"))
    })
}

impl FrameCounts {
    #[inline]
    fn get(&self, slot: usize) -> u16 {
        match self {
            FrameCounts::Sparse(sparse) => {
                let used = used_slots(sparse);
                if used & (1 << slot) == 0 {
                    return 0;
                }
                let rank = (used & ((1u128 << slot) - 1)).count_ones() as usize;
                u16::from(sparse[16 + rank])
            }
            FrameCounts::Dense(table) => table[slot],
        }
    }

    /// Adds one to each slot of `slots` (a bitmap).
    fn bump_all(&mut self, slots: u128) {
        if slots == 0 {
            return;
        }
        match self {
            FrameCounts::Sparse(sparse) => {
                let used = used_slots(sparse);
                if slots & !used == 0 {
                    // No new slot: the counts bumped in place, unless one would pass 255.
                    let counts = &mut sparse[16..];
                    let bumped = |mut rest: u128| {
                        std::iter::from_fn(move || {
                            (rest != 0).then(|| {
                                let slot = rest.trailing_zeros();
                                rest &= rest - 1;
                                slot
                            })
                        })
                        .enumerate()
                        .filter(move |(_, slot)| slots & 1 << slot != 0)
                        .map(|(rank, _)| rank)
                    };
                    if bumped(used).all(|rank| counts[rank] < 0xff) {
                        bumped(used).for_each(|rank| counts[rank] += 1);
                        return;
                    }
                }
                let mut table = [0u16; FRAME_SLOTS];
                let mut rest = used;
                for count in sparse.iter().skip(16) {
                    table[rest.trailing_zeros() as usize] = u16::from(*count);
                    rest &= rest - 1;
                }
                let mut rest = slots;
                while rest != 0 {
                    table[rest.trailing_zeros() as usize] += 1;
                    rest &= rest - 1;
                }
                *self = Self::from_table(table);
            }
            FrameCounts::Dense(table) => {
                let mut rest = slots;
                while rest != 0 {
                    table[rest.trailing_zeros() as usize] += 1;
                    rest &= rest - 1;
                }
            }
        }
    }

    fn halve(&mut self) {
        match self {
            FrameCounts::Sparse(_) => *self = Self::from_table(self.table().map(|c| c / 2)),
            FrameCounts::Dense(table) => table.iter_mut().for_each(|c| *c /= 2),
        }
    }

    fn table(&self) -> [u16; FRAME_SLOTS] {
        match self {
            FrameCounts::Sparse(sparse) => {
                let mut table = [0; FRAME_SLOTS];
                let mut rest = used_slots(sparse);
                for count in sparse.iter().skip(16) {
                    table[rest.trailing_zeros() as usize] = u16::from(*count);
                    rest &= rest - 1;
                }
                table
            }
            FrameCounts::Dense(table) => **table,
        }
    }

    /// The list while at most `SPARSE_FRAME_SLOTS` slots are used, each at most 255 times.
    fn from_table(table: [u16; FRAME_SLOTS]) -> Self {
        let used = table.iter().filter(|c| **c > 0).count();
        if used == 0 {
            FrameCounts::Sparse(Box::default())
        } else if used <= SPARSE_FRAME_SLOTS && table.iter().all(|c| *c <= 0xff) {
            let map = (0..FRAME_SLOTS)
                .filter(|s| table[*s] > 0)
                .fold(0u128, |map, s| map | 1 << s);
            let mut sparse = Vec::with_capacity(16 + used);
            sparse.extend_from_slice(&map.to_le_bytes());
            sparse.extend(table.iter().filter(|c| **c > 0).map(|c| *c as u8));
            FrameCounts::Sparse(sparse.into_boxed_slice())
        } else {
            FrameCounts::Dense(Box::new(table))
        }
    }
}

impl PartialEq for FrameCounts {
    fn eq(&self, other: &Self) -> bool {
        self.table() == other.table()
    }
}

impl Eq for FrameCounts {}

impl Default for FrameWords {
    fn default() -> Self {
        Self {
            counts: FrameCounts::Sparse(Box::default()),
            prompts: 0,
        }
    }
}

impl FrameWords {
    #[inline]
    pub fn is_frame(&self, word: u32) -> bool {
        self.prompts >= FRAME_MIN_PROMPTS
            && u32::from(self.counts.get(word as usize % FRAME_SLOTS)) * 2 >= self.prompts
    }

    /// Counts one prompt's content words (each distinct slot once per prompt).
    pub fn observe(&mut self, features: &PromptFeatures) {
        if self.prompts >= u32::from(u16::MAX) / 2 {
            // Halving keeps every ratio and bounds the counters.
            self.counts.halve();
            self.prompts /= 2;
        }
        self.prompts += 1;
        let mut seen = 0u128;
        for word in &features.content[..features.content_len as usize] {
            seen |= 1 << (*word as usize % FRAME_SLOTS);
        }
        self.counts.bump_all(seen);
    }

    /// Heap bytes held (the list or the table).
    pub fn heap_bytes(&self) -> usize {
        match &self.counts {
            FrameCounts::Sparse(sparse) => sparse.len(),
            FrameCounts::Dense(_) => FRAME_SLOTS * 2,
        }
    }
}

mod slots {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        counts: &super::FrameCounts,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        counts.table().as_slice().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<super::FrameCounts, D::Error> {
        let table: [u16; super::FRAME_SLOTS] = Vec::<u16>::deserialize(d)?
            .try_into()
            .map_err(|_| serde::de::Error::custom("frame-word table has the wrong size"))?;
        Ok(super::FrameCounts::from_table(table))
    }
}

impl PromptFeatures {
    /// Estimated Jaccard similarity of two prompts' word bigrams: shared bins over the bins
    /// either prompt fills (short prompts leave bins empty; empty bins never match).
    pub fn similarity(a: &[u16; SIGNATURE_BINS], b: &[u16; SIGNATURE_BINS]) -> f64 {
        let mut shared = 0;
        let mut filled = 0;
        for (x, y) in a.iter().zip(b) {
            if *x != u16::MAX || *y != u16::MAX {
                filled += 1;
                if x == y {
                    shared += 1;
                }
            }
        }
        if filled == 0 {
            0.0
        } else {
            f64::from(shared) / f64::from(filled)
        }
    }
}

/// Function words and task verbs that say nothing about a prompt's topic. Only words of four or
/// more letters matter (shorter ones never count as content).
const NON_TOPIC_WORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "again",
    "also",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "could",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "from",
    "further",
    "have",
    "having",
    "here",
    "into",
    "just",
    "more",
    "most",
    "much",
    "must",
    "only",
    "other",
    "over",
    "same",
    "should",
    "some",
    "such",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "under",
    "until",
    "very",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "whom",
    "will",
    "with",
    "would",
    "your",
    "yours",
    "please",
    "want",
    "need",
    "like",
    "make",
    "give",
    "tell",
    "know",
    "help",
    "using",
    "used",
    "following",
    "write",
    "explain",
    "describe",
    "generate",
    "create",
    "provide",
    "answer",
    "question",
    "given",
    "text",
    "sentence",
    "word",
    "words",
    "example",
    "examples",
    "based",
    "find",
    "show",
    "name",
    "identify",
    "summarize",
    "summarise",
    "classify",
    "rewrite",
    "translate",
    "compose",
    "suggest",
    "determine",
    "compare",
    "list",
    "many",
    "five",
    "three",
    "step",
    "steps",
    "detail",
    "detailed",
    "think",
    "brief",
    "briefly",
    "short",
    "long",
    "reasoning",
    "output",
    "input",
    "response",
    "respond",
    "return",
    "format",
    "json",
    "best",
    "good",
    "different",
    "difference",
    "important",
    "main",
];

/// Single words (eight or more letters) that on their own ask for a reasoning trace, in English,
/// Spanish, Portuguese, French, German and Russian (the inflected forms a request uses).
const REASONING_WORDS: &[&str] = &[
    "reasoning",
    "rationale",
    "stepwise",
    "derivation",
    "razonamiento",
    "raciocínio",
    "raciocinio",
    "raisonnement",
    "denkprozess",
    "gedankengang",
    "gedankenkette",
    "gedankengänge",
    "rechenweg",
    "lösungsweg",
    "loesungsweg",
    "рассуждения",
    "рассуждение",
    "рассуждений",
    "рассуждениями",
    "рассуждать",
    "пошагово",
    "поэтапно",
];

/// Word pairs that ask for a reasoning trace ("step-by-step" tokenises to step/by/step), in the
/// same languages: "paso a paso", "passo a passo", "étape par étape", "pas à pas", "Schritt für
/// Schritt", "шаг за шагом", "chain of thought" and "show your work" in each.
const REASONING_PAIRS: &[(&str, &str)] = &[
    ("paso", "a"),
    ("passo", "a"),
    ("étape", "par"),
    ("etape", "par"),
    ("pas", "à"),
    ("schritt", "für"),
    ("schritt", "fur"),
    ("schritt", "fuer"),
    ("шаг", "за"),
    ("за", "шагом"),
    ("de", "pensamiento"),
    ("de", "pensamento"),
    ("de", "pensée"),
    ("de", "pensee"),
    ("цепочка", "мыслей"),
    ("цепочку", "мыслей"),
    ("ход", "мыслей"),
    ("muestra", "tu"),
    ("mostre", "seu"),
    ("montre", "ton"),
    ("montrez", "votre"),
    ("zeige", "deinen"),
    ("zeigen", "sie"),
    ("покажи", "ход"),
    ("step", "by"),
    ("by", "step"),
    ("of", "thought"),
    ("thought", "process"),
    ("show", "your"),
    ("your", "work"),
    ("think", "through"),
    ("think", "carefully"),
    ("explain", "your"),
    ("walk", "through"),
    ("justify", "your"),
    ("each", "step"),
    ("every", "step"),
    ("intermediate", "steps"),
    ("your", "thinking"),
];

struct WordLists {
    non_topic: HashSetFilter,
    reasoning_words: HashSetFilter,
    reasoning_pairs: HashSetFilter,
}

fn word_lists() -> &'static WordLists {
    static LISTS: OnceLock<WordLists> = OnceLock::new();
    LISTS.get_or_init(|| WordLists {
        non_topic: HashSetFilter::new(
            NON_TOPIC_WORDS
                .iter()
                .map(|w| word_hash(w.as_bytes()))
                .collect(),
        ),
        reasoning_words: HashSetFilter::new(
            REASONING_WORDS
                .iter()
                .map(|w| word_hash(w.as_bytes()))
                .collect(),
        ),
        reasoning_pairs: HashSetFilter::new(
            REASONING_PAIRS
                .iter()
                .map(|(a, b)| combine(word_hash(a.as_bytes()), word_hash(b.as_bytes())))
                .collect(),
        ),
    })
}

/// Phrases that ask for a reasoning trace in Chinese, Japanese and Korean, matched as substrings
/// (these scripts do not put spaces between words, and Korean glues particles to them).
const CJK_REASONING_PHRASES: &[&str] = &[
    // zh: step by step, one step at a time, chain of thought, reasoning/thinking process.
    "一步一步",
    "一步步",
    "逐步",
    "思维链",
    "思路链",
    "推理过程",
    "思考过程",
    "推理步骤",
    "解题过程",
    "展示你的推理",
    // ja: step by step, in stages, in order, thought process, chain of thought.
    "ステップバイステップ",
    "段階的に",
    "一歩ずつ",
    "順を追って",
    "思考過程",
    "推論過程",
    "思考の連鎖",
    "推論の過程",
    // ko: step by step, one step at a time, thought/reasoning process, chain of thought.
    "단계별",
    "단계적으로",
    "차근차근",
    "한 단계씩",
    "사고 과정",
    "추론 과정",
    "생각의 사슬",
    "사고의 사슬",
];

/// Classes of ASCII bytes for the word scanner: letters and digits are word bytes; everything
/// else separates words.
const LETTER: u8 = 1;
const DIGIT: u8 = 2;
const BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if byte.is_ascii_digit() {
            DIGIT
        } else if byte.is_ascii_alphabetic() {
            LETTER
        } else {
            0
        };
        b += 1;
    }
    table
};

/// [`word_hash`] of a run of ASCII letters and digits, eight bytes at a time: the same value,
/// since `to_ascii_lowercase` of a letter or digit is setting bit 5 (digits already have it) and
/// the hasher packs its bytes big-endian.
#[inline(always)]
fn ascii_word_hash(word: &[u8]) -> u64 {
    const LOWER: u64 = 0x2020_2020_2020_2020;
    let mut hash = WORD_SEED;
    let mut chunks = word.chunks_exact(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        hash = (hash ^ (u64::from_be_bytes(bytes) | LOWER))
            .wrapping_mul(WORD_MULTIPLIER)
            .rotate_left(29);
    }
    let mut pending = 0u64;
    for &byte in chunks.remainder() {
        pending = (pending << 8) | u64::from(byte | 0x20);
    }
    mix64(hash ^ pending ^ ((word.len() as u64) << 56))
}

/// Feeds the words of an ASCII prompt to `on_word` as (hash, letters, has digit): runs of
/// letters and digits found through a byte-class table, each hashed as a whole slice.
#[inline(always)]
fn ascii_words(bytes: &[u8], on_word: &mut impl FnMut(u64, usize, bool)) {
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        while i < n && BYTE_CLASS[bytes[i] as usize] == 0 {
            i += 1;
        }
        if i == n {
            break;
        }
        let start = i;
        let mut classes = 0u8;
        while i < n {
            let class = BYTE_CLASS[bytes[i] as usize];
            if class == 0 {
                break;
            }
            classes |= class;
            i += 1;
        }
        let word = &bytes[start..i];
        on_word(ascii_word_hash(word), word.len(), classes & DIGIT != 0);
    }
}

/// Chinese, Japanese and Korean characters: scripts whose words the coverage counts as character
/// bigrams.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x1100..=0x11FF    // Hangul Jamo
        | 0x3130..=0x318F    // Hangul Compatibility Jamo
        | 0xAC00..=0xD7AF    // Hangul Syllables
        | 0x20000..=0x2FFFF) // CJK Extensions B and later
}

fn hash_chars(chars: impl Iterator<Item = char>) -> (u64, usize, bool) {
    let mut hasher = WordHasher::new();
    let mut letters = 0;
    let mut digit = false;
    let mut buf = [0u8; 4];
    for c in chars {
        letters += 1;
        digit |= c.is_numeric();
        for lower in c.to_lowercase() {
            for byte in lower.encode_utf8(&mut buf).bytes() {
                hasher = hasher.push(byte);
            }
        }
    }
    (hasher.finish(), letters, digit)
}

/// Feeds the words of a prompt with non-ASCII text to `on_word` as (hash, letters, has digit):
/// UAX #29 words, and for runs of CJK characters overlapping bigrams (a lone character alone).
/// A bigram counts as four letters, so it is a content word.
fn unicode_words(text: &str, on_word: &mut impl FnMut(u64, usize, bool)) {
    use unicode_segmentation::UnicodeSegmentation;
    // The previous CJK character, where it ended, and whether it has been emitted in a bigram.
    let mut previous: Option<(char, usize, bool)> = None;
    let flush = |previous: &mut Option<(char, usize, bool)>,
                 on_word: &mut dyn FnMut(u64, usize, bool)| {
        if let Some((c, _, false)) = previous.take() {
            let (hash, _, _) = hash_chars(std::iter::once(c));
            on_word(hash, 4, false);
        }
    };
    for (start, word) in text.unicode_word_indices() {
        if !word.chars().all(is_cjk) {
            flush(&mut previous, on_word);
            let (hash, letters, digit) = hash_chars(word.chars());
            on_word(hash, letters, digit);
            continue;
        }
        for (offset, c) in word.char_indices() {
            let at = start + offset;
            match previous {
                Some((p, end, _)) if end == at => {
                    let (hash, _, _) = hash_chars([p, c].into_iter());
                    on_word(hash, 4, false);
                    previous = Some((c, at + c.len_utf8(), true));
                }
                _ => {
                    flush(&mut previous, on_word);
                    previous = Some((c, at + c.len_utf8(), false));
                }
            }
        }
    }
    flush(&mut previous, on_word);
}

/// Whether non-ASCII text contains a CJK reasoning demand.
fn cjk_reasoning(text: &str) -> bool {
    if !text.chars().any(is_cjk) {
        return false;
    }
    let lower = text.to_lowercase();
    CJK_REASONING_PHRASES.iter().any(|p| lower.contains(p))
}

/// Extracts all prompt features in one scan.
pub fn prompt_features(text: &str) -> PromptFeatures {
    let lists = word_lists();
    let mut fingerprint = 0u64;
    let mut words = 0u32;
    let mut prefix_key = 0u64;
    let mut suffix = [0u64; SUFFIX_WORDS];
    let mut signature = [u16::MAX; SIGNATURE_BINS];
    let mut content = [0u32; MAX_CONTENT_WORDS];
    let mut content_len = 0usize;
    let mut reasoning = false;
    let mut previous: Option<u64> = None;

    let mut on_word = |hash: u64, len: usize, has_digit: bool| {
        words += 1;
        fingerprint = combine(fingerprint, hash);
        let slot = if has_digit { DIGIT_SLOT } else { hash };
        if (words as usize) <= PREFIX_WORDS {
            prefix_key = combine(prefix_key, slot);
        }
        suffix[(words as usize) % SUFFIX_WORDS] = slot;
        let shingle = match previous {
            Some(prev) => combine(prev, hash),
            None => hash,
        };
        if previous.is_some() && !reasoning && lists.reasoning_pairs.contains(shingle) {
            reasoning = true;
        }
        let bin = (shingle as usize) % SIGNATURE_BINS;
        let value = (shingle >> 48) as u16;
        if value < signature[bin] {
            signature[bin] = value;
        }
        if !reasoning && len >= 8 && lists.reasoning_words.contains(hash) {
            reasoning = true;
        }
        if len >= 4 && !has_digit && !lists.non_topic.contains(hash) {
            let short = (hash >> 32) as u32;
            if content_len < MAX_CONTENT_WORDS {
                content[content_len] = short;
                content_len += 1;
            }
        }
        previous = Some(hash);
    };

    if text.is_ascii() {
        ascii_words(text.as_bytes(), &mut on_word);
    } else {
        unicode_words(text, &mut on_word);
        reasoning |= cjk_reasoning(text);
    }

    // The last SUFFIX_WORDS words in order, whatever the ring position.
    let mut suffix_key = 0u64;
    let n = words as usize;
    for k in (n + 1 - SUFFIX_WORDS.min(n))..=n {
        if k > 0 {
            suffix_key = combine(suffix_key, suffix[k % SUFFIX_WORDS]);
        }
    }
    PromptFeatures {
        fingerprint,
        words,
        prefix_key,
        suffix_key,
        signature,
        reasoning,
        content,
        content_len: content_len as u8,
    }
}

/// Whether a system prompt demands reasoning (same word lists as prompts).
pub fn demands_reasoning(text: &str) -> bool {
    prompt_features(text).reasoning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lexicon_entry_is_one_word_and_listed_once() {
        // An entry with punctuation can never match (words are split on it), and a duplicate
        // reads as if it weighed twice.
        let pairs = REASONING_PAIRS.iter().flat_map(|(a, b)| [*a, *b]);
        for word in NON_TOPIC_WORDS
            .iter()
            .chain(REASONING_WORDS)
            .copied()
            .chain(pairs)
        {
            assert!(
                word.chars().all(char::is_alphanumeric),
                "{word:?} is not one word"
            );
            assert_eq!(word, word.to_lowercase(), "{word:?} is not lowercase");
        }
        for list in [NON_TOPIC_WORDS, REASONING_WORDS] {
            let mut seen = std::collections::HashSet::new();
            for word in list {
                assert!(seen.insert(word), "{word:?} is listed twice");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for pair in REASONING_PAIRS {
            assert!(seen.insert(pair), "{pair:?} is listed twice");
        }
    }

    /// The byte-at-a-time scanner the table scanner replaced: the oracle for its words.
    fn reference_ascii_words(text: &str) -> Vec<(u64, usize, bool)> {
        let mut out = Vec::new();
        let mut hasher = WordHasher::new();
        let mut has_digit = false;
        for &byte in text.as_bytes() {
            if byte.is_ascii_alphanumeric() {
                hasher = hasher.push(byte.to_ascii_lowercase());
                has_digit |= byte.is_ascii_digit();
            } else if hasher.len > 0 {
                out.push((hasher.finish(), hasher.len as usize, has_digit));
                hasher = WordHasher::new();
                has_digit = false;
            }
        }
        if hasher.len > 0 {
            out.push((hasher.finish(), hasher.len as usize, has_digit));
        }
        out
    }

    #[test]
    fn the_table_scanner_finds_the_same_words_and_hashes_as_the_byte_scanner() {
        // Every ASCII byte, words of every length around the eight-byte chunks, mixed case and
        // digits, separators at both ends or none.
        let all_bytes: String = (0u8..128).map(char::from).collect();
        let mut texts = vec![
            String::new(),
            all_bytes.clone(),
            all_bytes.repeat(3),
            "Explain  the Krebs cycle!".to_string(),
            "  x ".to_string(),
            "ABCDEFGH abcdefgh AbCdEfGhI 12345678 a1b2c3d4e5 Z".to_string(),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 1..=40 {
            let mut text = String::new();
            for _ in 0..6 {
                for _ in 0..len {
                    seed = mix64(seed.wrapping_add(1));
                    let alphabet = b"aZ9q_-. \n,\t!Mx0";
                    text.push(char::from(
                        alphabet[(seed % alphabet.len() as u64) as usize],
                    ));
                }
                text.push(' ');
            }
            texts.push(text);
        }
        for text in &texts {
            let mut fast = Vec::new();
            ascii_words(text.as_bytes(), &mut |h, n, d| fast.push((h, n, d)));
            assert_eq!(fast, reference_ascii_words(text), "{text:?}");
        }
        for word in [
            "a",
            "Zebra",
            "photosynthesis",
            "ABCDEFGHIJKLMNOP",
            "x86",
            "0123456789abcdefg",
        ] {
            assert_eq!(
                ascii_word_hash(word.as_bytes()),
                word_hash(word.as_bytes()),
                "{word}"
            );
        }
    }

    #[test]
    fn spacing_case_and_punctuation_do_not_change_the_fingerprint() {
        let a = prompt_features("Explain  the Krebs cycle!");
        let b = prompt_features("explain the krebs cycle");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(
            a.fingerprint,
            prompt_features("explain the calvin cycle").fingerprint
        );
        assert_eq!(a.words, 4);
    }

    #[test]
    fn templated_prompts_share_a_skeleton_end_while_their_fills_differ() {
        let a = prompt_features("Classify this review's sentiment: the pasta was cold");
        let b = prompt_features("Classify this review's sentiment: great service, will return");
        assert_eq!(a.prefix_key, b.prefix_key);
        assert_ne!(a.fingerprint, b.fingerprint);
        let c = prompt_features("Photosynthesis in desert plants. Explain it step by step");
        let d = prompt_features("The causes of the French revolution. Explain it step by step");
        assert_eq!(c.suffix_key, d.suffix_key);
        assert_ne!(c.prefix_key, d.prefix_key);
    }

    #[test]
    fn numbers_are_masked_in_the_skeleton_but_not_in_the_fingerprint() {
        let a = prompt_features("Order 1234 has not arrived");
        let b = prompt_features("Order 98 has not arrived");
        assert_eq!(a.prefix_key, b.prefix_key);
        assert_eq!(a.suffix_key, b.suffix_key);
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn suffix_key_uses_the_last_three_words_in_order() {
        let a = prompt_features("alpha beta gamma delta");
        let b = prompt_features("zeta beta gamma delta");
        let c = prompt_features("zeta gamma beta delta");
        assert_eq!(a.suffix_key, b.suffix_key);
        assert_ne!(a.suffix_key, c.suffix_key);
        // Short prompts still get a key of what they have.
        assert_ne!(
            prompt_features("hi").suffix_key,
            prompt_features("yo").suffix_key
        );
    }

    #[test]
    fn an_edited_resend_shares_most_signature_bins_and_a_new_prompt_does_not() {
        let base = prompt_features(
            "Why does my rust borrow checker complain about a mutable reference inside this loop",
        );
        let edited = prompt_features(
            "Why does my rust borrow checker complain about the mutable reference inside this loop",
        );
        let other = prompt_features("Suggest three names for a bakery that sells sourdough bread");
        assert!(PromptFeatures::similarity(&base.signature, &edited.signature) >= 0.6);
        assert!(PromptFeatures::similarity(&base.signature, &other.signature) <= 0.2);
    }

    #[test]
    fn requests_for_reasoning_traces_are_recognised() {
        assert!(prompt_features("Solve 17*23. Think step-by-step.").reasoning);
        assert!(prompt_features("Show your work and explain your reasoning").reasoning);
        assert!(prompt_features("Write out the chain of thought behind the answer").reasoning);
        assert!(!prompt_features("What is the capital of Peru?").reasoning);
        assert!(!prompt_features("Walked by the step store").reasoning);
    }

    #[test]
    fn requests_for_reasoning_traces_are_recognised_in_eight_more_languages() {
        let demands = [
            "请一步一步地解释光合作用",
            "请逐步推导这个公式，并展示你的推理过程",
            "このグラフの意味をステップバイステップで説明してください",
            "答えに至る思考過程を順を追って書いてください",
            "이 문제를 단계별로 풀어 주세요",
            "추론 과정을 차근차근 보여 주세요",
            "Объясни шаг за шагом, как работает фотосинтез",
            "Покажи ход рассуждений, прежде чем ответить",
            "Explica paso a paso cómo funciona la fotosíntesis",
            "Muestra tu razonamiento antes de responder",
            "Expliquez étape par étape comment fonctionne la photosynthèse",
            "Détaillez votre raisonnement avant de répondre",
            "Erkläre Schritt für Schritt, wie Photosynthese funktioniert",
            "Zeige deinen Lösungsweg und deinen Gedankengang",
            "Explique passo a passo como funciona a fotossíntese",
            "Mostre seu raciocínio e a cadeia de pensamento",
        ];
        for prompt in demands {
            assert!(prompt_features(prompt).reasoning, "{prompt}");
        }
        let plain = [
            "光合作用是什么？",
            "東京でおすすめのラーメン屋はどこですか",
            "서울에서 맛있는 식당을 추천해 주세요",
            "Какая столица Перу?",
            "¿Cuál es la capital de Perú?",
            "Quelle est la capitale du Pérou ?",
            "Was ist die Hauptstadt von Peru?",
            "Qual é a capital do Peru?",
        ];
        for prompt in plain {
            assert!(!prompt_features(prompt).reasoning, "{prompt}");
        }
    }

    #[test]
    fn unicode_words_are_lowercased_by_unicode_rules_and_cjk_becomes_character_bigrams() {
        // Case and punctuation do not matter outside ASCII either.
        let a = prompt_features("Объясни ФОТОСИНТЕЗ!");
        let b = prompt_features("объясни фотосинтез");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.words, 2);
        // A Chinese sentence without spaces: one bigram per adjacent pair, not one long word.
        let zh = prompt_features("光合作用");
        assert_eq!(zh.words, 3);
        assert_eq!(zh.content_len, 3);
        // Punctuation breaks a run: 光合 + 作用, two bigrams.
        assert_eq!(prompt_features("光合，作用").words, 2);
        // Two Chinese prompts on different subjects share no content word.
        let other = prompt_features("法国大革命");
        let shared = zh.content[..3]
            .iter()
            .filter(|w| other.content[..other.content_len as usize].contains(w))
            .count();
        assert_eq!(shared, 0);
        // Accented words are whole words, counted by letters.
        let fr = prompt_features("Écris une théorie élégante");
        assert_eq!(fr.words, 4);
        assert_eq!(fr.content_len, 3, "écris, théorie, élégante");
    }

    #[test]
    fn content_words_skip_function_and_task_words_and_numbers() {
        let f = prompt_features("Explain the photosynthesis of 42 desert plants in detail");
        let expected: Vec<u32> = ["photosynthesis", "desert", "plants"]
            .iter()
            .map(|w| (word_hash(w.as_bytes()) >> 32) as u32)
            .collect();
        assert_eq!(&f.content[..f.content_len as usize], expected.as_slice());
    }

    #[test]
    fn frame_counts_kept_as_a_list_then_a_table_count_exactly_as_the_table() {
        let mut frame = FrameWords::default();
        let mut table = [0u16; FRAME_SLOTS];
        for i in 0..600usize {
            let prompt = format!(
                "{} {} route the ticket",
                crate::detect::testing::word(i),
                crate::detect::testing::word(i * 7 % 90)
            );
            let features = prompt_features(&prompt);
            frame.observe(&features);
            let mut seen = 0u128;
            for word in &features.content[..features.content_len as usize] {
                let slot = *word as usize % FRAME_SLOTS;
                if seen & (1 << slot) == 0 {
                    seen |= 1 << slot;
                    table[slot] += 1;
                }
            }
            assert_eq!(frame.counts.table(), table, "prompt {i}");
            if i == 1 {
                assert!(matches!(frame.counts, FrameCounts::Sparse(_)));
            }
        }
        assert!(
            matches!(frame.counts, FrameCounts::Dense(_)),
            "a count passed 255"
        );
        let mut halved = frame.counts.clone();
        halved.halve();
        assert_eq!(halved.table(), table.map(|c| c / 2));
    }

    #[test]
    fn words_in_half_an_accounts_prompts_become_frame_words() {
        let mut frame = FrameWords::default();
        let template = |fill: &str| format!("Route this support ticket to billing: {fill}");
        for i in 0..20 {
            frame.observe(&prompt_features(&template(&crate::detect::testing::word(
                i,
            ))));
        }
        let is_frame = |w: &str| frame.is_frame((word_hash(w.as_bytes()) >> 32) as u32);
        assert!(is_frame("route") && is_frame("ticket") && is_frame("billing"));
        // Other words only look like frame words when they share a slot (3 of 128 here).
        let collisions = (0..100)
            .filter(|i| is_frame(&crate::detect::testing::word(10_000 + i)))
            .count();
        assert!(collisions <= 8, "{collisions}");
        assert!(!FrameWords::default().is_frame((word_hash(b"route") >> 32) as u32));
    }
}
