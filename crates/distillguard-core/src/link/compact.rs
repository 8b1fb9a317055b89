//! The linker's compact profile of an account: what it needs of the account's latest summary,
//! not a copy of the summary (`docs/detectors.md`, "Linker memory").
//!
//! The linker holds one profile per tracked account, so at a million accounts every byte of it
//! is a megabyte. Two parts:
//! - [`Traits`], read at every relink of the account or of an account sharing a value with it
//!   (support kinds, proxy hopping, lockstep's cheap test, eviction): plain fields;
//! - everything cluster judgement and link evidence read (the detector inputs of the combined
//!   summary and of a member's own finding, example addresses and agents), packed as variable-
//!   length integers: most counts of most accounts fit one or two bytes instead of eight.
//!
//! Not kept: what only feature extraction reads (the address, subnet and content samples; the
//! linker holds their keys in the node's features), the account id (the node holds it), and the
//! user agents and system prompts past the first (nothing reads them after extraction). The
//! subnet sample is kept as its estimate: whether the account hops networks.
//!
//! Unpacking gives back every field the linker, cluster judgement and the detectors read exactly
//! (integers and floats bit for bit), so findings are those of a full copy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::event::{AccountId, ModelName};
use crate::features::{AccountSummary, ModelUse, SharedSamples, VocabularyCounter, SUBNET_SAMPLE};
use crate::time::EventTime;

const HOURS: usize = 24;

/// What relinking reads of an account.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Traits {
    pub last_seen: EventTime,
    pub events: u64,
    /// Distinct /24s (IPv6 /48s) estimated from the subnet sample.
    pub networks: f64,
    /// Hours of the last day with activity (lockstep's cheap test).
    pub active_hours: u8,
}

impl Traits {
    pub fn of(summary: &AccountSummary) -> Self {
        Self {
            last_seen: summary.last_seen,
            events: summary.events,
            networks: crate::sketch::bottomk::estimate::<SUBNET_SAMPLE>(&summary.subnet_sample),
            active_hours: summary.activity.iter().filter(|v| **v > 0).count() as u8,
        }
    }
}

/// What the support kinds read, only of two accounts already linked (packed first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Support {
    pub events: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub completion_known: u64,
    pub turns_known: u64,
    pub single_turn: u64,
}

impl Support {
    pub fn of(summary: &AccountSummary) -> Self {
        Self {
            events: summary.events,
            prompt_tokens: summary.prompt_tokens,
            completion_tokens: summary.completion_tokens,
            completion_known: summary.completion_known,
            turns_known: summary.turns_known,
            single_turn: summary.single_turn,
        }
    }
}

/// One account's profile.
///
/// The hourly activity and hour-of-day counts are packed as a 24-bit map of the hours with
/// events and a number per such hour (most accounts at a million were active in a few hours:
/// some 8 bytes instead of 48). Checkpoints hold the layout written before, a number per hour
/// ([`Profile::relayout`] converts each way).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Profile {
    pub traits: Traits,
    /// The rest, in [`Profile::new`]'s order: what support reads first, then hourly activity
    /// (lockstep unpacks only these).
    packed: Box<[u8]>,
    /// Shared with the account's state (a pointer, not a copy).
    samples: SharedSamples,
}

impl Profile {
    pub fn new(summary: AccountSummary) -> Self {
        let s = &summary;
        let mut w = Writer(Vec::with_capacity(192));
        for v in [
            s.prompt_tokens,
            s.completion_tokens,
            s.completion_known,
            s.turns_known,
            s.single_turn,
        ] {
            w.uint(v);
        }
        w.hours(&s.activity);
        w.hours(&s.hour_of_day);
        w.time(s.first_seen);
        for v in [
            s.events_last_24h,
            s.events_last_hour,
            s.completion_tokens_last_24h,
            s.completion_tokens_last_hour,
            s.reasoning_tokens,
        ] {
            w.uint(v);
        }
        w.opt_float(s.quiet_gap_median_hours);
        w.uint(u64::from(s.quiet_days));
        w.opt_float(s.gap_cv);
        w.uint(s.gaps);
        w.uint(s.prompts);
        w.uint(s.distinct_prompts);
        w.opt_float(s.vocabulary_richness);
        w.uint(s.subject_words);
        w.keys(&s.skeleton_prefixes);
        w.keys(&s.skeleton_suffixes);
        for v in [
            s.exact_repeats,
            s.near_repeats,
            s.reasoning_prompts,
            s.reasoning_system,
        ] {
            w.uint(v);
        }
        w.opt_raw(s.system_prompts.first().copied());
        for v in [
            s.logprobs,
            s.multi_sample,
            s.large_max_tokens,
            s.temperature_zero,
            s.distribution_requests,
            s.distribution_alternatives,
            s.opener_repeats,
            s.task_resends,
            s.deep_turns,
        ] {
            w.uint(v);
        }
        w.uint(s.models.len() as u64);
        for model in &s.models {
            w.text(model.model.as_str());
            w.time(model.first_used);
            w.uint(model.events);
            w.raw(model.recent_weight.to_bits());
        }
        w.uint(s.client_ips.len() as u64);
        for ip in &s.client_ips {
            w.ip(ip);
        }
        w.uint(s.distinct_ips);
        w.opt_raw(s.user_agents.first().copied());
        w.uint(s.distinct_user_agents);
        w.opt_text(s.user_agent.as_deref());
        w.uint(s.end_user_events);
        w.uint(s.distinct_end_users);
        w.opt_text(s.payment_fingerprint.as_deref());
        match s.account_created_at {
            Some(t) => {
                w.0.push(1);
                w.time(t);
            }
            None => w.0.push(0),
        }
        w.young(s.young_vocabulary.as_deref());
        Self {
            traits: Traits::of(s),
            packed: w.0.into_boxed_slice(),
            samples: summary.samples,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.packed.len()
    }

    pub fn support(&self) -> Support {
        self.read_support(&mut Reader(&self.packed))
            .expect("checked when made or read back")
    }

    fn read_support(&self, r: &mut Reader<'_>) -> Option<Support> {
        let [prompt_tokens, completion_tokens, completion_known, turns_known, single_turn] =
            r.uints()?;
        Some(Support {
            events: self.traits.events,
            prompt_tokens,
            completion_tokens,
            completion_known,
            turns_known,
            single_turn,
        })
    }

    /// Events per hour over the last 24 hours of the summary, oldest first.
    pub fn activity(&self) -> [u32; HOURS] {
        let mut r = Reader(&self.packed);
        self.read_support(&mut r)
            .and_then(|_| self.hours(&mut r))
            .expect("checked when made or read back")
    }

    /// Lifetime events per UTC hour of day.
    pub fn hour_of_day(&self) -> [u32; HOURS] {
        let mut r = Reader(&self.packed);
        self.read_support(&mut r)
            .and_then(|_| r.skip_hours())
            .and_then(|_| self.hours(&mut r))
            .expect("checked when made or read back")
    }

    fn hours(&self, r: &mut Reader<'_>) -> Option<[u32; HOURS]> {
        r.hours()
    }

    /// The packed bytes with both hour tables converted: to a number per hour (the checkpoint
    /// layout) from the map form, or back. `None` if they do not read.
    fn relayout(packed: &[u8], to_checkpoint: bool) -> Option<Box<[u8]>> {
        let mut r = Reader(packed);
        let _: [u64; 5] = r.uints()?;
        let head = packed.len() - r.0.len();
        let mut w = Writer(Vec::with_capacity(packed.len() + 2 * HOURS));
        w.0.extend_from_slice(&packed[..head]);
        for _ in 0..2 {
            if to_checkpoint {
                let hours = r.hours()?;
                hours.iter().for_each(|v| w.uint(u64::from(*v)));
            } else {
                let mut hours = [0u32; HOURS];
                for slot in &mut hours {
                    *slot = r.u32()?;
                }
                w.hours(&hours);
            }
        }
        w.0.extend_from_slice(r.0);
        Some(w.0.into_boxed_slice())
    }

    /// The summary the profile was made from, as the linker, cluster judgement and the detectors
    /// read it: the samples only feature extraction reads are empty, and of the user agents and
    /// system prompts only the first is kept.
    pub fn summary(&self, account: &AccountId) -> AccountSummary {
        self.unpack(account)
            .expect("checked when made or read back")
    }

    /// Whether the packed part reads back (a checkpoint's bytes are checked once, on load).
    pub fn is_valid(&self) -> bool {
        AccountId::parse("check").is_ok_and(|id| self.unpack(&id).is_some())
    }

    fn unpack(&self, account: &AccountId) -> Option<AccountSummary> {
        let t = &self.traits;
        let mut r = Reader(&self.packed);
        let support = self.read_support(&mut r)?;
        let activity = self.hours(&mut r)?;
        let hour_of_day = self.hours(&mut r)?;
        let first_seen = r.time()?;
        let [events_last_24h, events_last_hour, completion_tokens_last_24h, completion_tokens_last_hour, reasoning_tokens] =
            r.uints()?;
        let quiet_gap_median_hours = r.opt_float()?;
        let quiet_days = r.u32()?;
        let gap_cv = r.opt_float()?;
        let [gaps, prompts, distinct_prompts] = r.uints()?;
        let vocabulary_richness = r.opt_float()?;
        let subject_words = r.uint()?;
        let skeleton_prefixes = r.keys()?;
        let skeleton_suffixes = r.keys()?;
        let [exact_repeats, near_repeats, reasoning_prompts, reasoning_system] = r.uints()?;
        let system_prompts = r.opt_raw()?.into_iter().collect();
        let [logprobs, multi_sample, large_max_tokens, temperature_zero, distribution_requests, distribution_alternatives, opener_repeats, task_resends, deep_turns] =
            r.uints()?;
        let mut models = Vec::with_capacity(r.len()?);
        for _ in 0..models.capacity() {
            models.push(ModelUse {
                model: ModelName::parse(r.text()?).ok()?,
                first_used: r.time()?,
                events: r.uint()?,
                recent_weight: f64::from_bits(r.raw()?),
            });
        }
        let mut client_ips = Vec::with_capacity(r.len()?);
        for _ in 0..client_ips.capacity() {
            client_ips.push(r.ip()?);
        }
        let distinct_ips = r.uint()?;
        let user_agents = r.opt_raw()?.into_iter().collect();
        let distinct_user_agents = r.uint()?;
        let user_agent = r.opt_text()?;
        let [end_user_events, distinct_end_users] = r.uints()?;
        let payment_fingerprint = r.opt_text()?;
        let account_created_at = match r.byte()? {
            0 => None,
            _ => Some(r.time()?),
        };
        let young_vocabulary = r.young()?;
        r.0.is_empty().then_some(())?;
        Some(AccountSummary {
            account_id: account.clone(),
            first_seen,
            last_seen: t.last_seen,
            events: t.events,
            events_last_24h,
            events_last_hour,
            completion_tokens: support.completion_tokens,
            completion_tokens_last_24h,
            completion_tokens_last_hour,
            prompt_tokens: support.prompt_tokens,
            reasoning_tokens,
            completion_known: support.completion_known,
            activity,
            hour_of_day,
            quiet_gap_median_hours,
            quiet_days,
            gap_cv,
            gaps,
            // Not packed: without it a member's sittings only count higher, which never makes a
            // cluster look like one person's evening (a cluster is never in a first sitting).
            late_in_sitting: 0,
            prompts,
            distinct_prompts,
            vocabulary_richness,
            subject_words,
            young_vocabulary,
            skeleton_prefixes,
            skeleton_suffixes,
            exact_repeats,
            near_repeats,
            turns_known: support.turns_known,
            single_turn: support.single_turn,
            reasoning_prompts,
            reasoning_system,
            system_prompts,
            logprobs,
            multi_sample,
            large_max_tokens,
            temperature_zero,
            distribution_requests,
            distribution_alternatives,
            opener_repeats,
            task_resends,
            deep_turns,
            models,
            client_ips,
            distinct_ips,
            ip_sample: Vec::new(),
            subnet_sample: Vec::new(),
            content_sample: Vec::new(),
            user_agents,
            distinct_user_agents,
            user_agent,
            end_user_events,
            distinct_end_users,
            payment_fingerprint,
            account_created_at,
            samples: self.samples.clone(),
        })
    }
}

/// A profile as checkpoints hold it.
#[derive(Serialize, Deserialize)]
struct ProfileWire {
    traits: Traits,
    packed: Box<[u8]>,
    samples: SharedSamples,
}

impl Serialize for Profile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ProfileWire {
            traits: self.traits,
            packed: Self::relayout(&self.packed, true)
                .ok_or_else(|| serde::ser::Error::custom("a packed profile does not read"))?,
            samples: self.samples.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Profile {
    /// Bytes that do not read are kept as they are, for `is_valid` to refuse.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ProfileWire::deserialize(deserializer)?;
        Ok(Self {
            traits: wire.traits,
            packed: Self::relayout(&wire.packed, false).unwrap_or(wire.packed),
            samples: wire.samples,
        })
    }
}

/// LEB128 integers (7 bits a byte), zig-zag for signed ones; hashes and floats as 8 raw bytes.
struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn time(&mut self, t: EventTime) {
        let v = t.epoch_ms();
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn raw(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn opt_raw(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.raw(v);
            }
            None => self.0.push(0),
        }
    }

    fn opt_float(&mut self, v: Option<f64>) {
        self.opt_raw(v.map(f64::to_bits));
    }

    fn text(&mut self, text: &str) {
        self.uint(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }

    fn opt_text(&mut self, text: Option<&str>) {
        match text {
            Some(text) => {
                self.0.push(1);
                self.text(text);
            }
            None => self.0.push(0),
        }
    }

    /// 24 hourly counts: a 3-byte map of the nonzero ones, then those.
    fn hours(&mut self, hours: &[u32; HOURS]) {
        let map = (0..HOURS)
            .filter(|h| hours[*h] > 0)
            .fold(0u32, |map, h| map | 1 << h);
        self.0.extend_from_slice(&map.to_le_bytes()[..3]);
        for v in hours.iter().filter(|v| **v > 0) {
            self.uint(u64::from(*v));
        }
    }

    fn keys(&mut self, keys: &[(u64, u32)]) {
        self.uint(keys.len() as u64);
        for (key, count) in keys {
            self.raw(*key);
            self.uint(u64::from(*count));
        }
    }

    fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.0.push(4);
                self.0.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.0.push(6);
                self.0.extend_from_slice(&v6.octets());
            }
        }
    }

    /// A young vocabulary holds fewer than a few dozen words: its set bits as gaps, a byte each
    /// mostly, instead of the 256-byte bitmap.
    fn young(&mut self, counter: Option<&VocabularyCounter>) {
        let Some(counter) = counter else {
            self.0.push(0);
            return;
        };
        self.0.push(1);
        let bits: Vec<usize> = counter.set_bits().collect();
        self.uint(bits.len() as u64);
        let mut last = 0;
        for bit in bits {
            self.uint((bit - last) as u64);
            last = bit;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn uint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn uints<const N: usize>(&mut self) -> Option<[u64; N]> {
        let mut out = [0u64; N];
        for slot in &mut out {
            *slot = self.uint()?;
        }
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    fn len(&mut self) -> Option<usize> {
        // A length can never exceed the bytes left (each item takes at least one).
        usize::try_from(self.uint()?)
            .ok()
            .filter(|n| *n <= self.0.len())
    }

    fn time(&mut self) -> Option<EventTime> {
        let v = self.uint()?;
        EventTime::from_epoch_ms(((v >> 1) as i64) ^ -((v & 1) as i64)).ok()
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn raw(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn opt_raw(&mut self) -> Option<Option<u64>> {
        match self.byte()? {
            0 => Some(None),
            _ => self.raw().map(Some),
        }
    }

    fn opt_float(&mut self) -> Option<Option<f64>> {
        Some(self.opt_raw()?.map(f64::from_bits))
    }

    fn text(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }

    fn opt_text(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            _ => self.text().map(Some),
        }
    }

    fn hours(&mut self) -> Option<[u32; HOURS]> {
        let map = self.bytes(3)?;
        let mut map = u32::from_le_bytes([map[0], map[1], map[2], 0]);
        let mut out = [0u32; HOURS];
        while map != 0 {
            // Only nonzero counts are listed (one form per table).
            out[map.trailing_zeros() as usize] = self.u32().filter(|v| *v > 0)?;
            map &= map - 1;
        }
        Some(out)
    }

    /// Passes over a table of `hours` without reading its numbers.
    fn skip_hours(&mut self) -> Option<()> {
        let map = self.bytes(3)?;
        let mut n = u32::from_le_bytes([map[0], map[1], map[2], 0]).count_ones();
        while n > 0 {
            if self.byte()? & 0x80 == 0 {
                n -= 1;
            }
        }
        Some(())
    }

    fn keys(&mut self) -> Option<Vec<(u64, u32)>> {
        let mut keys = Vec::with_capacity(self.len()?);
        for _ in 0..keys.capacity() {
            keys.push((self.raw()?, self.u32()?));
        }
        Some(keys)
    }

    fn ip(&mut self) -> Option<IpAddr> {
        match self.byte()? {
            4 => {
                let o: [u8; 4] = self.bytes(4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            6 => {
                let o: [u8; 16] = self.bytes(16)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }

    fn young(&mut self) -> Option<Option<Box<VocabularyCounter>>> {
        if self.byte()? == 0 {
            return Some(None);
        }
        let n = self.len()?;
        let mut bits = Vec::with_capacity(n);
        let mut last = 0usize;
        for _ in 0..n {
            last = last.checked_add(usize::try_from(self.uint()?).ok()?)?;
            bits.push(last);
        }
        VocabularyCounter::from_set_bits(bits).map(|c| Some(Box::new(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich_summary() -> AccountSummary {
        let at = EventTime::from_epoch_ms(1_700_000_000_000).unwrap();
        let mut young = VocabularyCounter::default();
        for word in 0..40u64 {
            young.insert(crate::sketch::mix64(word));
        }
        let mut activity = [0u32; 24];
        activity[3] = 7;
        activity[23] = 300_000;
        AccountSummary {
            account_id: AccountId::parse("acct-1").unwrap(),
            first_seen: EventTime::from_epoch_ms(-5).unwrap_or(at),
            last_seen: at,
            events: u64::MAX,
            events_last_24h: 1 << 40,
            events_last_hour: 0,
            completion_tokens: 12_345,
            completion_tokens_last_24h: 99,
            completion_tokens_last_hour: 1,
            prompt_tokens: 77,
            reasoning_tokens: 3,
            completion_known: 40,
            activity,
            hour_of_day: [u32::MAX; 24],
            quiet_gap_median_hours: Some(0.1 + 0.2),
            quiet_days: 6,
            gap_cv: None,
            gaps: 8,
            late_in_sitting: 0, // not packed
            prompts: 50,
            distinct_prompts: 44,
            vocabulary_richness: Some(f64::NAN),
            subject_words: 30,
            young_vocabulary: Some(Box::new(young)),
            skeleton_prefixes: vec![(u64::MAX, 4), (1, 2)],
            skeleton_suffixes: vec![],
            exact_repeats: 1,
            near_repeats: 2,
            turns_known: 40,
            single_turn: 30,
            reasoning_prompts: 4,
            reasoning_system: 5,
            system_prompts: vec![0xdead_beef],
            logprobs: 6,
            multi_sample: 7,
            large_max_tokens: 8,
            temperature_zero: 9,
            distribution_requests: 10,
            distribution_alternatives: 11,
            opener_repeats: 12,
            task_resends: 13,
            deep_turns: 14,
            models: vec![ModelUse {
                model: ModelName::parse("gpt-4o").unwrap(),
                first_used: at,
                events: 50,
                recent_weight: 1.0 / 3.0,
            }],
            client_ips: vec![
                "203.0.113.9".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            distinct_ips: 2,
            ip_sample: Vec::new(),
            subnet_sample: Vec::new(),
            content_sample: Vec::new(),
            user_agents: vec![42],
            distinct_user_agents: 1,
            user_agent: Some("OpenAI/Python 1.2.0 — ünïcode".to_owned()),
            end_user_events: 0,
            distinct_end_users: 0,
            payment_fingerprint: None,
            account_created_at: Some(at),
            samples: SharedSamples::default(),
        }
    }

    #[test]
    fn a_profile_gives_back_every_field_judgement_reads_bit_for_bit() {
        let summary = rich_summary();
        let profile = Profile::new(summary.clone());
        let back = profile.summary(&summary.account_id);
        // NaN is not equal to itself: compare it by its bits, the rest field by field.
        assert_eq!(
            back.vocabulary_richness.map(f64::to_bits),
            summary.vocabulary_richness.map(f64::to_bits)
        );
        let mut expected = summary.clone();
        expected.vocabulary_richness = None;
        let mut got = back;
        got.vocabulary_richness = None;
        assert_eq!(got, expected);
        assert_eq!(profile.activity(), summary.activity);
        assert_eq!(profile.hour_of_day(), summary.hour_of_day);
        assert_eq!(profile.support(), Support::of(&summary));
        assert!(profile.is_valid());
    }

    #[test]
    fn a_profile_keeps_only_the_first_agent_and_system_prompt_and_no_samples() {
        let mut summary = rich_summary();
        summary.user_agents = vec![1, 2, 3];
        summary.system_prompts = vec![4, 5];
        summary.ip_sample = vec![1, 2];
        summary.subnet_sample = (0..10u64).map(crate::sketch::mix64).collect();
        summary.subnet_sample.sort_unstable();
        summary.content_sample = vec![3];
        let profile = Profile::new(summary.clone());
        assert_eq!(profile.traits.networks, 10.0);
        let back = profile.summary(&summary.account_id);
        assert_eq!(back.user_agents, vec![1]);
        assert_eq!(back.system_prompts, vec![4]);
        assert!(back.ip_sample.is_empty() && back.subnet_sample.is_empty());
        assert!(back.content_sample.is_empty());
    }

    #[test]
    fn checkpoints_hold_a_number_per_hour_and_read_back_the_same_profile() {
        for summary in [rich_summary(), {
            let mut quiet = rich_summary();
            quiet.activity = [0; 24];
            quiet.hour_of_day = [0; 24];
            quiet.hour_of_day[13] = 3;
            quiet
        }] {
            let profile = Profile::new(summary.clone());
            // The layout written before: the support counts, 48 numbers, the rest as it is.
            let mut r = Reader(&profile.packed);
            let support: [u64; 5] = r.uints().unwrap();
            let (activity, hour_of_day) = (r.hours().unwrap(), r.hours().unwrap());
            assert_eq!(
                (activity, hour_of_day),
                (summary.activity, summary.hour_of_day)
            );
            let mut old = Writer(Vec::new());
            support.iter().for_each(|v| old.uint(*v));
            activity
                .iter()
                .chain(&hour_of_day)
                .for_each(|v| old.uint(u64::from(*v)));
            old.0.extend_from_slice(r.0);
            let json = serde_json::to_value(&profile).unwrap();
            let written: Vec<u8> = serde_json::from_value(json["packed"].clone()).unwrap();
            assert_eq!(written, old.0);
            let back: Profile = serde_json::from_value(json).unwrap();
            assert_eq!(back, profile);
            assert!(back.is_valid());
            let bytes = rmp_serde::to_vec_named(&profile).unwrap();
            assert_eq!(rmp_serde::from_slice::<Profile>(&bytes).unwrap(), profile);
        }
    }

    #[test]
    fn truncated_packed_bytes_do_not_read_back() {
        let mut profile = Profile::new(rich_summary());
        let mut bytes = profile.packed.to_vec();
        bytes.pop();
        profile.packed = bytes.into_boxed_slice();
        assert!(!profile.is_valid());
    }
}
