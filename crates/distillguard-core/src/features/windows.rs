//! Event-time windows and small running statistics kept per account.

use serde::{Deserialize, Serialize};

use crate::sketch::LinearCounter;
use crate::time::EventTime;

pub(super) const HOURS: usize = 24;
/// Completed days of "longest quiet gap" kept.
const QUIET_DAYS: usize = 7;
/// Inter-arrival gaps longer than this are breaks between sessions, not timing within one.
pub(super) const SESSION_GAP_MS: i64 = 30 * EventTime::MINUTE;

/// Subject words per vocabulary window: bounded so that the distinct counter never saturates
/// and a long-lived account is judged on its recent language, not its lifetime.
const VOCABULARY_WINDOW_WORDS: u64 = 4_000;
/// How much Herdan's C falls per e-fold of text length (see `Vocabulary::current`).
const RICHNESS_DRIFT_PER_E_FOLD: f64 = 0.05;
/// Below this many subject words richness is not measured.
pub const MIN_VOCABULARY_WORDS: u64 = 60;

/// Distinct subject words of a vocabulary window.
pub type VocabularyCounter = LinearCounter<32>;

/// Herdan's C of `words` subject words of which `distinct` differ, length-corrected to a full
/// window; `None` below [`MIN_VOCABULARY_WORDS`].
pub fn herdan(distinct: f64, words: u64) -> Option<f64> {
    if words < MIN_VOCABULARY_WORDS {
        return None;
    }
    let words = words as f64;
    let distinct = distinct.max(1.0);
    let drift = RICHNESS_DRIFT_PER_E_FOLD * (VOCABULARY_WINDOW_WORDS as f64 / words).ln();
    Some(distinct.ln() / words.ln() - drift)
}

/// Set bits of a window's distinct-word counter kept as a sorted list before the 2,048-bit table
/// (256 bytes) is allocated.
const SPARSE_WORD_BITS: usize = 96;

/// A [`VocabularyCounter`] held as its set bits while they are few: most accounts send a few
/// prompts, whose subject words set a few dozen of the 2,048 bits. The same bits either way, so
/// the same estimate; checkpoints hold the table's form (older ones load unchanged).
#[derive(Debug, Clone)]
pub(super) enum WordBits {
    /// Set bits, ascending, as gaps of a byte each (see [`encode_gaps`]): a few dozen bits
    /// spread over 2,048 are some 40 apart, so a byte a bit instead of two.
    Sparse(Box<[u8]>),
    Dense(Box<VocabularyCounter>),
}

/// Ascending bits (below 2,048) as gaps from the previous bit plus one (from -1 for the first):
/// a gap up to 255 is one byte, a longer one a 0 byte per 255 and then the rest (1 to 255).
fn encode_gaps(bits: &[u16]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(bits.len() + 2);
    let mut previous = -1i32;
    for &bit in bits {
        let mut gap = i32::from(bit) - previous;
        while gap > 255 {
            out.push(0);
            gap -= 255;
        }
        out.push(gap as u8);
        previous = i32::from(bit);
    }
    out.into_boxed_slice()
}

/// The bits of [`encode_gaps`] into `out`; how many.
fn decode_gaps(bytes: &[u8], out: &mut [u16; SPARSE_WORD_BITS]) -> usize {
    let mut n = 0;
    let mut at = -1i32;
    for &b in bytes {
        if b == 0 {
            at += 255;
        } else {
            at += i32::from(b);
            out[n] = at as u16;
            n += 1;
        }
    }
    n
}

impl Default for WordBits {
    fn default() -> Self {
        WordBits::Sparse(Box::default())
    }
}

/// A window's bits while words are added: a sparse form decoded once for a whole prompt (and
/// its bytes kept, to be put back as they were when the prompt sets no new bit). On the stack
/// for one call only, so the sparse list's size is not a stored size.
#[allow(clippy::large_enum_variant)]
enum Open {
    Sparse([u16; SPARSE_WORD_BITS], usize, Option<Box<[u8]>>),
    Dense(Box<VocabularyCounter>),
}

impl Open {
    fn of(bits: WordBits) -> Self {
        match bits {
            WordBits::Sparse(bytes) => {
                let mut list = [0; SPARSE_WORD_BITS];
                let n = decode_gaps(&bytes, &mut list);
                Open::Sparse(list, n, Some(bytes))
            }
            WordBits::Dense(counter) => Open::Dense(counter),
        }
    }

    fn close(self) -> WordBits {
        match self {
            Open::Sparse(_, _, Some(unchanged)) => WordBits::Sparse(unchanged),
            Open::Sparse(list, n, None) => WordBits::Sparse(encode_gaps(&list[..n])),
            Open::Dense(counter) => WordBits::Dense(counter),
        }
    }

    fn insert(&mut self, hash: u64) {
        let bit = VocabularyCounter::bit_of(hash);
        match self {
            Open::Sparse(list, n, unchanged) => {
                let Err(at) = list[..*n].binary_search(&(bit as u16)) else {
                    return;
                };
                *unchanged = None;
                if *n < SPARSE_WORD_BITS {
                    list.copy_within(at..*n, at + 1);
                    list[at] = bit as u16;
                    *n += 1;
                } else {
                    let mut dense = VocabularyCounter::default();
                    list.iter().for_each(|b| dense.set_bit(usize::from(*b)));
                    dense.set_bit(bit);
                    *self = Open::Dense(Box::new(dense));
                }
            }
            Open::Dense(counter) => counter.set_bit(bit),
        }
    }

    fn estimate(&self) -> f64 {
        match self {
            Open::Sparse(_, n, _) => VocabularyCounter::estimate_of(*n as u32),
            Open::Dense(counter) => counter.estimate(),
        }
    }
}

impl WordBits {
    #[cfg(test)]
    fn insert(&mut self, hash: u64) {
        let mut open = Open::of(std::mem::take(self));
        open.insert(hash);
        *self = open.close();
    }

    fn estimate(&self) -> f64 {
        match self {
            WordBits::Sparse(bytes) => {
                VocabularyCounter::estimate_of(bytes.iter().filter(|b| **b != 0).count() as u32)
            }
            WordBits::Dense(counter) => counter.estimate(),
        }
    }

    fn to_counter(&self) -> VocabularyCounter {
        match self {
            WordBits::Sparse(bytes) => {
                let mut list = [0; SPARSE_WORD_BITS];
                let n = decode_gaps(bytes, &mut list);
                let mut counter = VocabularyCounter::default();
                list[..n]
                    .iter()
                    .for_each(|b| counter.set_bit(usize::from(*b)));
                counter
            }
            WordBits::Dense(counter) => (**counter).clone(),
        }
    }

    fn from_counter(counter: VocabularyCounter) -> Self {
        let set = counter.set_bits().count();
        if set <= SPARSE_WORD_BITS {
            let bits: Vec<u16> = counter.set_bits().map(|b| b as u16).collect();
            WordBits::Sparse(encode_gaps(&bits))
        } else {
            WordBits::Dense(Box::new(counter))
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            WordBits::Sparse(bytes) => bytes.len(),
            WordBits::Dense(_) => std::mem::size_of::<VocabularyCounter>(),
        }
    }
}

impl PartialEq for WordBits {
    fn eq(&self, other: &Self) -> bool {
        self.to_counter() == other.to_counter()
    }
}

impl Serialize for WordBits {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_counter().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WordBits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        VocabularyCounter::deserialize(deserializer).map(Self::from_counter)
    }
}

/// How many different subject words an account uses for how many it sends (topic spread).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Vocabulary {
    /// Below `VOCABULARY_WINDOW_WORDS` (written as before, a number).
    pub(super) words: u32,
    pub(super) distinct: WordBits,
    #[serde(with = "optional_float")]
    pub(super) previous: Previous,
}

/// The previous window's richness; `NONE` (a NaN, which richness never is) when there is none:
/// 8 bytes instead of an `Option<f64>`'s 16. Written as the option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Previous(u64);

impl Previous {
    const NONE: Previous = Previous(u64::MAX);

    fn get(self) -> Option<f64> {
        (self != Self::NONE).then(|| f64::from_bits(self.0))
    }

    fn of(value: Option<f64>) -> Self {
        value.map_or(Self::NONE, |v| Previous(v.to_bits()))
    }
}

impl Default for Previous {
    fn default() -> Self {
        Self::NONE
    }
}

mod optional_float {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Previous;

    pub fn serialize<S: Serializer>(value: &Previous, serializer: S) -> Result<S::Ok, S::Error> {
        value.get().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Previous, D::Error> {
        Option::<f64>::deserialize(deserializer).map(Previous::of)
    }
}

impl Vocabulary {
    /// Counts one prompt's subject words, in order (the window's bits decoded once).
    pub(super) fn insert_all(&mut self, words: &[u32]) {
        if words.is_empty() {
            return;
        }
        let mut open = Open::of(std::mem::take(&mut self.distinct));
        for &word in words {
            if u64::from(self.words) >= VOCABULARY_WINDOW_WORDS {
                self.previous = Previous::of(herdan(open.estimate(), u64::from(self.words)));
                self.words = 0;
                open = Open::of(WordBits::default());
            }
            self.words += 1;
            open.insert(crate::sketch::mix64(u64::from(word)));
        }
        self.distinct = open.close();
    }

    /// Subject words in the current window.
    pub(super) fn words(&self) -> u64 {
        u64::from(self.words)
    }

    /// Herdan's C of the current window, length-corrected to a full window: C drifts down as a
    /// text grows (by about 0.05 per e-fold of words, in the simulator's rich and narrow sources
    /// alike), so a young window is compared as if it had reached `VOCABULARY_WINDOW_WORDS`.
    pub(super) fn current(&self) -> Option<f64> {
        herdan(self.distinct.estimate(), self.words())
    }

    /// The window's distinct-word counter while the account is too young for a richness of its
    /// own: a cluster of young accounts measures its richness over their union.
    pub(super) fn young(&self) -> Option<Box<VocabularyCounter>> {
        (self.previous.get().is_none() && self.words() < MIN_VOCABULARY_WORDS && self.words > 0)
            .then(|| Box::new(self.distinct.to_counter()))
    }

    /// The current window once it is a quarter full, the previous full window before that.
    pub(super) fn richness(&self) -> Option<f64> {
        let previous = self.previous.get();
        match (self.current(), previous) {
            (Some(c), _) if self.words() >= VOCABULARY_WINDOW_WORDS / 4 || previous.is_none() => {
                Some(c)
            }
            (_, Some(p)) => Some(p),
            (c, None) => c,
        }
    }
}

/// Lifetime requests per UTC hour of day, in 16 bits: when a slot would overflow every slot is
/// halved, which keeps the shares the detectors and the linker read (48 bytes less per account
/// than u32 counts).
///
/// Held inline as `hour << 16 | count` for up to three hours with requests (most accounts at a
/// million send a few requests: 16 bytes instead of the 48-byte table), the table (boxed) after.
/// The same counts either way; checkpoints hold the table.
#[derive(Debug, Clone)]
pub(super) enum HourOfDay {
    /// Hours with requests, `hour << 16 | count` (count at least 1); 0 for an unused entry.
    Few([u32; FEW_HOURS]),
    All(Box<[u16; HOURS]>),
}

/// Hours of the day held inline.
const FEW_HOURS: usize = 3;

impl Default for HourOfDay {
    fn default() -> Self {
        HourOfDay::Few([0; FEW_HOURS])
    }
}

impl PartialEq for HourOfDay {
    fn eq(&self, other: &Self) -> bool {
        self.table() == other.table()
    }
}

impl Eq for HourOfDay {}

impl HourOfDay {
    pub(super) fn add(&mut self, hour: usize) {
        if let HourOfDay::Few(entries) = self {
            if let Some(e) = entries
                .iter_mut()
                .find(|e| **e != 0 && (**e >> 16) as usize == hour)
            {
                if *e & 0xffff == u32::from(u16::MAX) {
                    // As the table: every hour halved (hours at zero drop out).
                    for e in entries.iter_mut().filter(|e| **e != 0) {
                        let halved = (*e & 0xffff) / 2;
                        *e = if halved == 0 {
                            0
                        } else {
                            (*e & !0xffff) | halved
                        };
                    }
                    let e = entries
                        .iter_mut()
                        .find(|e| **e != 0 && (**e >> 16) as usize == hour)
                        .expect("the full hour keeps half its count");
                    *e += 1;
                } else {
                    *e += 1;
                }
                return;
            }
            if let Some(e) = entries.iter_mut().find(|e| **e == 0) {
                *e = (hour as u32) << 16 | 1;
                return;
            }
            *self = HourOfDay::All(Box::new(self.table()));
        }
        if let HourOfDay::All(table) = self {
            if table[hour] == u16::MAX {
                for count in table.iter_mut() {
                    *count /= 2;
                }
            }
            table[hour] += 1;
        }
    }

    fn table(&self) -> [u16; HOURS] {
        match self {
            HourOfDay::Few(entries) => {
                let mut table = [0u16; HOURS];
                for e in entries.iter().filter(|e| **e != 0) {
                    table[(e >> 16) as usize] = (e & 0xffff) as u16;
                }
                table
            }
            HourOfDay::All(table) => **table,
        }
    }

    fn from_table(table: [u16; HOURS]) -> Self {
        if table.iter().filter(|c| **c > 0).count() <= FEW_HOURS {
            let mut entries = [0u32; FEW_HOURS];
            let used = (0..HOURS).filter(|h| table[*h] > 0);
            for (e, hour) in entries.iter_mut().zip(used) {
                *e = (hour as u32) << 16 | u32::from(table[hour]);
            }
            HourOfDay::Few(entries)
        } else {
            HourOfDay::All(Box::new(table))
        }
    }

    pub(super) fn counts(&self) -> [u32; HOURS] {
        self.table().map(u32::from)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            HourOfDay::Few(_) => 0,
            HourOfDay::All(_) => HOURS * 2,
        }
    }
}

impl Serialize for HourOfDay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.table().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HourOfDay {
    /// Checkpoints written before the change hold u32 counts: halved until they fit.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut wide = <[u32; HOURS]>::deserialize(deserializer)?;
        while wide.iter().any(|&c| c > u32::from(u16::MAX)) {
            for count in &mut wide {
                *count /= 2;
            }
        }
        Ok(Self::from_table(wide.map(|c| c as u16)))
    }
}

/// Events and completion tokens per event-time hour over the last 24 hours.
///
/// Slot `h mod 24` holds hour `h` for the 24 hours ending with the newest hour seen, so one
/// hour number is kept instead of one per slot (184 bytes less per account). An event older
/// than that window is outside every window the summary reads and is not counted.
#[derive(Debug, Clone, Default)]
pub(super) struct HourRing {
    /// The newest event hour (hours since the epoch); 0 while empty.
    latest: i64,
    slots: HourSlots,
}

/// Slots in use before the full table (192 bytes) is allocated.
const SPARSE_HOURS: usize = 8;

/// The ring's 24 slots: the used ones as a short list while the account has been active in few
/// of the last 24 hours (most accounts at a million), the full table after. Unused slots read as
/// zero either way, so every window sums the same.
#[derive(Debug, Clone)]
enum HourSlots {
    /// `[slot, events, completion tokens]` of each used slot (events at least 1), any order.
    Sparse(Box<[[u32; 3]]>),
    Dense(Box<HourTable>),
}

impl Default for HourSlots {
    fn default() -> Self {
        HourSlots::Sparse(Box::default())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HourTable {
    events: [u32; HOURS],
    completion_tokens: [u32; HOURS],
}

impl HourSlots {
    fn get(&self, slot: usize) -> (u32, u32) {
        match self {
            HourSlots::Sparse(used) => used
                .iter()
                .find(|e| e[0] as usize == slot)
                .map_or((0, 0), |e| (e[1], e[2])),
            HourSlots::Dense(table) => (table.events[slot], table.completion_tokens[slot]),
        }
    }

    fn clear(&mut self, slot: usize) {
        match self {
            HourSlots::Sparse(used) => {
                if let Some(at) = used.iter().position(|e| e[0] as usize == slot) {
                    super::compact::remove(used, at);
                }
            }
            HourSlots::Dense(table) => {
                table.events[slot] = 0;
                table.completion_tokens[slot] = 0;
            }
        }
    }

    fn add(&mut self, slot: usize, completion_tokens: u32) {
        if let HourSlots::Sparse(used) = self {
            if let Some(e) = used.iter_mut().find(|e| e[0] as usize == slot) {
                e[1] = e[1].saturating_add(1);
                e[2] = e[2].saturating_add(completion_tokens);
                return;
            }
            if used.len() < SPARSE_HOURS {
                super::compact::push(used, [slot as u32, 1, completion_tokens]);
                return;
            }
            *self = HourSlots::Dense(Box::new(self.table()));
        }
        if let HourSlots::Dense(table) = self {
            table.events[slot] = table.events[slot].saturating_add(1);
            table.completion_tokens[slot] =
                table.completion_tokens[slot].saturating_add(completion_tokens);
        }
    }

    fn table(&self) -> HourTable {
        match self {
            HourSlots::Sparse(used) => {
                let mut table = HourTable::default();
                for e in used {
                    table.events[e[0] as usize] = e[1];
                    table.completion_tokens[e[0] as usize] = e[2];
                }
                table
            }
            HourSlots::Dense(table) => (**table).clone(),
        }
    }

    fn from_table(table: HourTable) -> Self {
        let used: Box<[[u32; 3]]> = (0..HOURS)
            .filter(|&s| table.events[s] > 0 || table.completion_tokens[s] > 0)
            .map(|s| [s as u32, table.events[s], table.completion_tokens[s]])
            .collect();
        if used.len() <= SPARSE_HOURS {
            HourSlots::Sparse(used)
        } else {
            HourSlots::Dense(Box::new(table))
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            HourSlots::Sparse(used) => used.len() * 12,
            HourSlots::Dense(_) => std::mem::size_of::<HourTable>(),
        }
    }
}

impl PartialEq for HourRing {
    fn eq(&self, other: &Self) -> bool {
        self.latest == other.latest && self.slots.table() == other.slots.table()
    }
}

impl Eq for HourRing {}

/// Checkpoints hold the full table (the form written before the sparse one).
impl Serialize for HourRing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            latest: i64,
            events: &'a [u32; HOURS],
            completion_tokens: &'a [u32; HOURS],
        }
        let table = self.slots.table();
        Wire {
            latest: self.latest,
            events: &table.events,
            completion_tokens: &table.completion_tokens,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HourRing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HourRingWire::deserialize(deserializer).map(Self::from)
    }
}

impl HourRing {
    pub(super) fn add(&mut self, hour: i64, completion_tokens: u32) {
        if hour > self.latest {
            // Slots of the hours the window moves past are reused for the new hours.
            let cleared = (hour - self.latest).min(HOURS as i64);
            if cleared == HOURS as i64 {
                self.slots = HourSlots::default();
            } else {
                for h in (hour - cleared + 1)..=hour {
                    self.slots.clear(Self::slot(h));
                }
            }
            self.latest = hour;
        } else if hour <= self.latest - HOURS as i64 {
            return;
        }
        self.slots.add(Self::slot(hour), completion_tokens);
    }

    fn slot(hour: i64) -> usize {
        hour.rem_euclid(HOURS as i64) as usize
    }

    /// Whether `hour` is one of the 24 the ring holds.
    fn holds(&self, hour: i64) -> bool {
        hour <= self.latest && hour > self.latest - HOURS as i64
    }

    /// Events per hour for the 24 hours ending with `hour` (oldest first).
    pub(super) fn vector(&self, hour: i64) -> [u32; HOURS] {
        let mut out = [0; HOURS];
        for (i, h) in ((hour - HOURS as i64 + 1)..=hour).enumerate() {
            if self.holds(h) {
                out[i] = self.slots.get(Self::slot(h)).0;
            }
        }
        out
    }

    pub(super) fn sum(&self, from_hour: i64, to_hour: i64) -> (u64, u64) {
        let mut events = 0u64;
        let mut tokens = 0u64;
        for h in from_hour.max(self.latest - HOURS as i64 + 1)..=to_hour.min(self.latest) {
            let (e, t) = self.slots.get(Self::slot(h));
            events += u64::from(e);
            tokens += u64::from(t);
        }
        (events, tokens)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.heap_bytes()
    }
}

/// The ring as checkpoints hold it: with `latest`, or (written before it) an hour per slot.
#[derive(Deserialize)]
struct HourRingWire {
    #[serde(default)]
    latest: Option<i64>,
    #[serde(default)]
    hours: Option<[i64; HOURS]>,
    events: [u32; HOURS],
    completion_tokens: [u32; HOURS],
}

impl From<HourRingWire> for HourRing {
    fn from(wire: HourRingWire) -> Self {
        let mut latest = wire.latest.unwrap_or(0);
        let mut table = HourTable {
            events: wire.events,
            completion_tokens: wire.completion_tokens,
        };
        if let (None, Some(hours)) = (wire.latest, wire.hours) {
            let used = |slot: usize| table.events[slot] > 0 || table.completion_tokens[slot] > 0;
            latest = (0..HOURS)
                .filter(|&slot| used(slot))
                .map(|slot| hours[slot])
                .max()
                .unwrap_or(0);
            for (slot, hour) in hours.iter().enumerate() {
                if !(*hour <= latest && *hour > latest - HOURS as i64) {
                    table.events[slot] = 0;
                    table.completion_tokens[slot] = 0;
                }
            }
        }
        Self {
            latest,
            slots: HourSlots::from_table(table),
        }
    }
}

/// Longest gap between consecutive events per UTC day.
///
/// Held in 24 bytes without a heap list: the day index fits 32 bits, a gap within a day fits 32
/// bits of milliseconds, and the at most `QUIET_DAYS` completed days sit in a fixed ring.
/// Checkpoints hold the layout written before (`day` and `longest_today_ms` as 64-bit integers,
/// `completed` as a list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct QuietGaps {
    day: i32,
    longest_today_ms: u32,
    /// Longest gap of each recently completed day, in minutes (oldest first), `days` of them.
    completed: [u16; QUIET_DAYS],
    days: u8,
}

impl QuietGaps {
    pub(super) fn new(day: i64) -> Self {
        Self {
            day: day as i32,
            ..Self::default()
        }
    }

    /// Completed days measured.
    pub(super) fn days(&self) -> usize {
        usize::from(self.days)
    }

    pub(super) fn observe(&mut self, previous: EventTime, now: EventTime, first_day: i64) {
        let day = now.day_index();
        let gap = (now.epoch_ms() - previous.epoch_ms()).max(0);
        let mut longest_today_ms = i64::from(self.longest_today_ms);
        let this_day = i64::from(self.day);
        if day > this_day {
            // Close the day of the previous event (a partial first day says nothing) and count
            // wholly silent days in between as a 24-hour gap.
            let end_of_day = (this_day + 1) * EventTime::DAY;
            let closing = longest_today_ms.max(end_of_day - previous.epoch_ms());
            if this_day > first_day {
                self.push(closing);
            }
            for _ in (this_day + 1)..day.min(this_day + 1 + QUIET_DAYS as i64) {
                self.push(EventTime::DAY);
            }
            self.day = day as i32;
            longest_today_ms = now.epoch_ms() - day * EventTime::DAY;
        }
        longest_today_ms = longest_today_ms.max(gap.min(EventTime::DAY));
        self.longest_today_ms = longest_today_ms as u32;
    }

    pub(super) fn push(&mut self, gap_ms: i64) {
        let minutes = (gap_ms / EventTime::MINUTE).clamp(0, u16::MAX as i64) as u16;
        if self.days() == QUIET_DAYS {
            self.completed.copy_within(1.., 0);
            self.completed[QUIET_DAYS - 1] = minutes;
        } else {
            self.completed[self.days()] = minutes;
            self.days += 1;
        }
    }

    /// Median over completed days of the longest quiet gap, in hours.
    pub(super) fn median_hours(&self) -> Option<f64> {
        if self.days == 0 {
            return None;
        }
        let mut days = self.completed;
        let days = &mut days[..self.days()];
        days.sort_unstable();
        Some(f64::from(days[days.len() / 2]) / 60.0)
    }
}

/// `QuietGaps` as checkpoints hold it.
#[derive(Serialize, Deserialize)]
struct QuietGapsWire {
    day: i64,
    longest_today_ms: i64,
    completed: Vec<u16>,
}

impl Serialize for QuietGaps {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        QuietGapsWire {
            day: i64::from(self.day),
            longest_today_ms: i64::from(self.longest_today_ms),
            completed: self.completed[..self.days()].to_vec(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for QuietGaps {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = QuietGapsWire::deserialize(deserializer)?;
        let invalid = |what| serde::de::Error::custom(format!("quiet gaps: {what} out of range"));
        let mut quiet = QuietGaps {
            day: i32::try_from(wire.day).map_err(|_| invalid("day"))?,
            longest_today_ms: u32::try_from(wire.longest_today_ms)
                .map_err(|_| invalid("longest gap"))?,
            ..QuietGaps::default()
        };
        // The latest `QUIET_DAYS` days (a list never held more).
        let keep = wire.completed.len().saturating_sub(QUIET_DAYS);
        for minutes in &wire.completed[keep..] {
            quiet.completed[quiet.days()] = *minutes;
            quiet.days += 1;
        }
        Ok(quiet)
    }
}

/// Welford running mean and variance of within-session inter-arrival gaps (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct GapStats {
    pub(super) count: u64,
    pub(super) mean: f64,
    pub(super) m2: f64,
}

impl GapStats {
    pub(super) fn observe(&mut self, gap_ms: i64) {
        if !(0..=SESSION_GAP_MS).contains(&gap_ms) {
            return;
        }
        let x = gap_ms as f64 / 1_000.0;
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Coefficient of variation (0 = a metronome, about 1 = random arrivals).
    pub(super) fn cv(&self) -> Option<f64> {
        if self.count < 2 || self.mean <= 0.0 {
            return None;
        }
        let variance = self.m2 / (self.count - 1) as f64;
        Some(variance.sqrt() / self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_bits_kept_sparse_then_dense_estimate_exactly_as_the_table() {
        let mut bits = WordBits::default();
        let mut table = VocabularyCounter::default();
        for i in 0..3_000u64 {
            let hash = crate::sketch::mix64(i % 700);
            bits.insert(hash);
            table.insert(hash);
            assert_eq!(bits.estimate().to_bits(), table.estimate().to_bits(), "{i}");
            assert_eq!(bits.to_counter(), table);
            if i < 40 {
                assert!(matches!(bits, WordBits::Sparse(_)));
            }
        }
        assert!(matches!(bits, WordBits::Dense(_)));
        // A sparse-sized table read back from a checkpoint is sparse again.
        let json = serde_json::to_string(&WordBits::default()).unwrap();
        assert!(matches!(
            serde_json::from_str::<WordBits>(&json).unwrap(),
            WordBits::Sparse(_)
        ));
    }

    #[test]
    fn bit_gaps_of_a_byte_read_back_every_bit_at_any_spacing() {
        for bits in [
            vec![],
            vec![0u16],
            vec![2_047],
            vec![0, 254, 255, 509, 510, 765, 1_020, 1_021, 2_047],
            (0..96).map(|i| i * 21).collect(),
        ] {
            let bytes = encode_gaps(&bits);
            let mut out = [0; SPARSE_WORD_BITS];
            let n = decode_gaps(&bytes, &mut out);
            assert_eq!(&out[..n], bits.as_slice());
            assert_eq!(bytes.iter().filter(|b| **b != 0).count(), bits.len());
        }
    }

    #[test]
    fn a_prompt_of_words_counts_as_its_words_one_by_one() {
        // Reference: the window logic word by word on the table form.
        let mut vocabulary = Vocabulary::default();
        let (mut words, mut table, mut previous) = (0u64, VocabularyCounter::default(), None);
        let mut rng = 11u64;
        for prompt in 0..600u64 {
            let batch: Vec<u32> = (0..(prompt % 24))
                .map(|_| {
                    rng = crate::sketch::mix64(rng);
                    (rng % (50 + prompt * 3)) as u32
                })
                .collect();
            vocabulary.insert_all(&batch);
            for word in &batch {
                if words >= VOCABULARY_WINDOW_WORDS {
                    previous = herdan(table.estimate(), words);
                    words = 0;
                    table = VocabularyCounter::default();
                }
                words += 1;
                table.insert(crate::sketch::mix64(u64::from(*word)));
            }
            assert_eq!(vocabulary.words(), words);
            assert_eq!(vocabulary.distinct.to_counter(), table, "{prompt}");
            assert_eq!(vocabulary.previous.get(), previous);
            assert_eq!(
                vocabulary.distinct.estimate().to_bits(),
                table.estimate().to_bits()
            );
        }
        assert!(previous.is_some());
    }

    #[test]
    fn the_sparse_hour_ring_reads_the_same_windows_as_the_table() {
        // Reference: the 24-slot table the ring kept before, fed the same events.
        let mut ring = HourRing::default();
        let mut latest = 0i64;
        let mut table = HourTable::default();
        let mut rng = 7u64;
        for step in 0..5_000i64 {
            rng = crate::sketch::mix64(rng);
            // Mostly forward, sometimes a jump, sometimes late.
            let hour =
                1_000 + step / 3 + (rng % 40) as i64 - 20 + if step % 500 == 0 { 30 } else { 0 };
            let tokens = (rng >> 40) as u32 % 1_000;
            ring.add(hour, tokens);
            if hour > latest {
                let cleared = (hour - latest).min(HOURS as i64);
                for h in (hour - cleared + 1)..=hour {
                    let slot = HourRing::slot(h);
                    table.events[slot] = 0;
                    table.completion_tokens[slot] = 0;
                }
                latest = hour;
            } else if hour <= latest - HOURS as i64 {
                continue;
            }
            let slot = HourRing::slot(hour);
            table.events[slot] += 1;
            table.completion_tokens[slot] += tokens;
            assert_eq!(ring.slots.table(), table, "step {step}");
            let now = latest + (rng % 3) as i64;
            assert_eq!(ring.sum(now - 23, now), {
                let mut e = 0u64;
                let mut t = 0u64;
                for h in (now - 23).max(latest - 23)..=now.min(latest) {
                    e += u64::from(table.events[HourRing::slot(h)]);
                    t += u64::from(table.completion_tokens[HourRing::slot(h)]);
                }
                (e, t)
            });
        }
    }

    #[test]
    fn the_hour_ring_keeps_the_last_24_hours_and_drops_what_falls_out() {
        let mut ring = HourRing::default();
        ring.add(1_000, 10);
        ring.add(1_000, 5);
        ring.add(1_010, 1);
        assert_eq!(ring.sum(1_000, 1_010), (3, 16));
        // 30 hours on, hour 1_000 has left the window and its slot serves hour 1_024 + ...
        ring.add(1_030, 2);
        assert_eq!(ring.sum(1_007, 1_030), (2, 3));
        assert_eq!(ring.vector(1_030)[23], 1);
        // A late event inside the window counts; one older than it does not.
        ring.add(1_020, 4);
        ring.add(1_001, 4);
        assert_eq!(ring.sum(1_007, 1_030), (3, 7));
    }

    #[test]
    fn an_hour_ring_checkpointed_with_an_hour_per_slot_reads_back_the_same_windows() {
        let mut hours = [0i64; HOURS];
        let mut events = [0u32; HOURS];
        let mut tokens = [0u32; HOURS];
        // Hours 990 (outside the 24 ending at 1_020) and 1_000..=1_020 every 5 hours.
        for (hour, n) in [
            (990i64, 7u32),
            (1_000, 1),
            (1_005, 2),
            (1_010, 3),
            (1_020, 4),
        ] {
            let slot = hour.rem_euclid(HOURS as i64) as usize;
            hours[slot] = hour;
            events[slot] = n;
            tokens[slot] = n * 10;
        }
        let old =
            serde_json::json!({"hours": hours, "events": events, "completion_tokens": tokens});
        let ring: HourRing = serde_json::from_value(old).unwrap();
        assert_eq!(ring.sum(997, 1_020), (10, 100));
        assert_eq!(ring.vector(1_020)[23], 4);
        assert_eq!(
            ring.vector(1_020)[3],
            1,
            "hour 1_000 is the window's fourth"
        );
    }

    #[test]
    fn hour_of_day_counts_halve_instead_of_overflowing_and_old_wide_counts_fit() {
        let mut day = HourOfDay::default();
        for _ in 0..u32::from(u16::MAX) + 10 {
            day.add(3);
        }
        day.add(4);
        let counts = day.counts();
        assert!(counts[3] > 30_000 && counts[3] < 40_000, "{counts:?}");
        assert_eq!(counts[4], 1);
        let mut wide = [1u32; HOURS];
        wide[0] = 200_000;
        let read: HourOfDay = serde_json::from_value(serde_json::json!(wide)).unwrap();
        assert_eq!(read.counts()[0], 50_000);
    }
}
