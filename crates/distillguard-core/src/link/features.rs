//! The values accounts are joined on, taken from their summaries.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{LinkConfig, LinkWeights};
use crate::features::AccountSummary;
use crate::sketch::hash::{fast_hash, mix64};

/// Kinds of shared evidence, in the order their bits appear in [`super::Link::kinds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Payment = 0,
    ClientIp = 1,
    Subnet = 2,
    UserAgent = 3,
    SystemPrompt = 4,
    Skeleton = 5,
    Created = 6,
    Lockstep = 7,
    /// Two accounts that each hop over many networks met on the same rarely used address.
    ProxyPool = 8,
    /// Near-duplicate prompts (an LSH band key of their MinHash signatures) sent by both.
    NearDuplicate = 9,
    /// The same instruction tail (last words, digits as one slot) closing prompts of both,
    /// appended to varying heads.
    SharedTail = 10,
    /// Support only (strengthens a link that holds without it): the same prompt-length and
    /// completion-length regime.
    LengthRegime = 11,
    /// Support only: active in the same hours of the day, with the same session shape.
    Behaviour = 12,
}

/// Number of link kinds.
pub(crate) const KINDS: usize = 13;

impl LinkKind {
    pub const ALL: [LinkKind; KINDS] = [
        LinkKind::Payment,
        LinkKind::ClientIp,
        LinkKind::Subnet,
        LinkKind::UserAgent,
        LinkKind::SystemPrompt,
        LinkKind::Skeleton,
        LinkKind::Created,
        LinkKind::Lockstep,
        LinkKind::ProxyPool,
        LinkKind::NearDuplicate,
        LinkKind::SharedTail,
        LinkKind::LengthRegime,
        LinkKind::Behaviour,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Payment => "payment_fingerprint",
            LinkKind::ClientIp => "client_ip",
            LinkKind::Subnet => "subnet",
            LinkKind::UserAgent => "user_agent",
            LinkKind::SystemPrompt => "system_prompt",
            LinkKind::Skeleton => "prompt_skeleton",
            LinkKind::Created => "created_together",
            LinkKind::Lockstep => "lockstep_activity",
            LinkKind::ProxyPool => "proxy_pool",
            LinkKind::NearDuplicate => "near_duplicate_prompts",
            LinkKind::SharedTail => "shared_instruction_tail",
            LinkKind::LengthRegime => "length_regime",
            LinkKind::Behaviour => "behaviour",
        }
    }

    /// Content kinds: they strengthen a link that holds without them, and never make one.
    pub(crate) const CONTENT: [LinkKind; 2] = [LinkKind::NearDuplicate, LinkKind::SharedTail];

    pub(crate) fn base_weight(self, weights: &LinkWeights) -> f64 {
        match self {
            LinkKind::Payment => weights.payment,
            LinkKind::ClientIp => weights.client_ip,
            LinkKind::Subnet => weights.subnet,
            LinkKind::UserAgent => weights.user_agent,
            LinkKind::SystemPrompt => weights.system_prompt,
            LinkKind::Skeleton => weights.skeleton,
            LinkKind::Created => weights.created,
            LinkKind::Lockstep => weights.lockstep,
            LinkKind::ProxyPool => weights.proxy_pool,
            LinkKind::NearDuplicate => weights.near_duplicate,
            LinkKind::SharedTail => weights.shared_tail,
            LinkKind::LengthRegime => weights.length_regime,
            LinkKind::Behaviour => weights.behaviour,
        }
    }

    /// Network addresses and subnets: their distinct values add up only between accounts that
    /// hop networks.
    pub(crate) fn is_address(self) -> bool {
        matches!(self, LinkKind::ClientIp | LinkKind::Subnet)
    }

    /// Kinds of which an account holds many values (all its sampled addresses and subnets):
    /// each distinct shared value adds to the link, not only the strongest.
    pub(crate) fn adds_up(self) -> bool {
        matches!(
            self,
            LinkKind::ClientIp | LinkKind::Subnet | LinkKind::NearDuplicate | LinkKind::SharedTail
        )
    }
}

/// One value of one kind, hashed (stable across runs and platforms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeatureKey {
    pub kind: LinkKind,
    pub value: u64,
}

/// Client addresses joined on per account by use (the most used), besides the bottom-k sample.
/// An account's sorted feature keys as the linker's node holds them: the values, then their kinds
/// a byte each packed into trailing words. 9 bytes a key instead of 16 (a key's kind pads to 8
/// bytes), about 70 bytes per account at a million. Checkpoints hold the list of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Features(Box<[u64]>);

impl Features {
    pub fn new(keys: &[FeatureKey]) -> Self {
        let n = keys.len();
        let mut words = Vec::with_capacity(n + n.div_ceil(8));
        words.extend(keys.iter().map(|k| k.value));
        words.resize(n + n.div_ceil(8), 0);
        for (i, key) in keys.iter().enumerate() {
            words[n + i / 8] |= u64::from(key.kind as u8) << (8 * (i % 8));
        }
        Self(words.into_boxed_slice())
    }

    pub fn len(&self) -> usize {
        // The length is the largest n with n + ceil(n / 8) words (one n per word count).
        let words = self.0.len();
        let mut n = words * 8 / 9;
        while n + 1 + (n + 1).div_ceil(8) <= words {
            n += 1;
        }
        n
    }

    pub fn get(&self, i: usize, len: usize) -> FeatureKey {
        let kind = (self.0[len + i / 8] >> (8 * (i % 8))) as u8;
        FeatureKey {
            kind: LinkKind::ALL[usize::from(kind)],
            value: self.0[i],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = FeatureKey> + '_ {
        let len = self.len();
        (0..len).map(move |i| self.get(i, len))
    }

    pub fn contains(&self, key: &FeatureKey) -> bool {
        let len = self.len();
        let (mut low, mut high) = (0, len);
        while low < high {
            let mid = (low + high) / 2;
            match self.get(mid, len).cmp(key) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
            }
        }
        false
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len() * 8
    }
}

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut keys = Vec::<FeatureKey>::deserialize(deserializer)?;
        keys.sort_unstable();
        keys.dedup();
        Ok(Self::new(&keys))
    }
}

const IPS_PER_ACCOUNT: usize = 2;

fn ip_key(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix64(u64::from(u32::from(*v4))),
        IpAddr::V6(v6) => fast_hash(&v6.octets()),
    }
}

/// The keys of an address and of its subnet.
pub(crate) fn ip_keys(ip: &IpAddr) -> [FeatureKey; 2] {
    [
        FeatureKey {
            kind: LinkKind::ClientIp,
            value: ip_key(ip),
        },
        FeatureKey {
            kind: LinkKind::Subnet,
            // Distinct from the address key even for a /24's network address.
            value: mix64(ip_key(&subnet_of(ip)) ^ 0x5b),
        },
    ]
}

/// The /24 of an IPv4 address or the /48 of an IPv6 one.
pub(crate) fn subnet_of(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// Display form of a subnet: `203.0.113.0/24`, `2001:db8:1::/48`.
pub(crate) fn subnet_label(ip: &IpAddr) -> String {
    match subnet_of(ip) {
        net @ IpAddr::V4(_) => format!("{net}/24"),
        net @ IpAddr::V6(_) => format!("{net}/48"),
    }
}

/// The values an account joins on, sorted and without duplicates.
pub(crate) fn extract(summary: &AccountSummary, config: &LinkConfig) -> Vec<FeatureKey> {
    let mut keys = Vec::with_capacity(
        12 + summary.ip_sample.len()
            + summary.subnet_sample.len()
            + summary.content_sample.len()
            + IPS_PER_ACCOUNT * 2,
    );
    let mut push = |kind: LinkKind, value: u64| keys.push(FeatureKey { kind, value });
    if let Some(payment) = &summary.payment_fingerprint {
        push(LinkKind::Payment, fast_hash(payment.as_bytes()));
    }
    for ip in summary.client_ips.iter().take(IPS_PER_ACCOUNT) {
        let [address, subnet] = ip_keys(ip);
        push(address.kind, address.value);
        push(subnet.kind, subnet.value);
    }
    // Every address and subnet the account used, sampled consistently across accounts.
    for value in &summary.ip_sample {
        push(LinkKind::ClientIp, *value);
    }
    for value in &summary.subnet_sample {
        push(LinkKind::Subnet, *value);
    }
    if let Some(agent) = summary.user_agents.first() {
        push(LinkKind::UserAgent, *agent);
    }
    if let Some(system) = summary.system_prompts.first() {
        push(LinkKind::SystemPrompt, *system);
    }
    // A skeleton only joins once it is the account's habit (half its prompts): the common
    // openings of a task corpus ("Generate a list of …") are shared by everyone drawing on it.
    let habitual = |keys: &[(u64, u32)]| {
        keys.first()
            .filter(|(_, count)| u64::from(*count) * 2 >= summary.prompts.max(1))
            .map(|(key, _)| *key)
    };
    if let Some(prefix) = habitual(&summary.skeleton_prefixes) {
        push(LinkKind::Skeleton, prefix);
    }
    let habitual_suffix = habitual(&summary.skeleton_suffixes);
    if let Some(suffix) = habitual_suffix {
        push(LinkKind::Skeleton, mix64(suffix ^ 0x5f));
    }
    // Instruction tails the account appends repeatedly, besides its habitual one (already a
    // skeleton): augmentation suffixes rotate over heads drawn from a corpus.
    for (tail, count) in &summary.skeleton_suffixes {
        let share = f64::from(*count) / summary.prompts.max(1) as f64;
        if Some(*tail) != habitual_suffix
            && *count >= config.tail_min_uses
            && share >= config.tail_min_share
        {
            push(LinkKind::SharedTail, mix64(*tail ^ 0x7a11));
        }
    }
    for value in &summary.content_sample {
        push(LinkKind::NearDuplicate, *value);
    }
    if let Some(created) = summary.account_created_at {
        let window = config.creation_window_ms.max(1);
        push(
            LinkKind::Created,
            created.epoch_ms().div_euclid(window) as u64,
        );
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_features_give_back_every_key_in_order_at_every_length() {
        for n in 0..40usize {
            let mut keys: Vec<FeatureKey> = (0..n)
                .map(|i| FeatureKey {
                    kind: LinkKind::ALL[i * 5 % LinkKind::ALL.len()],
                    value: mix64(i as u64),
                })
                .collect();
            keys.sort_unstable();
            let packed = Features::new(&keys);
            assert_eq!(packed.len(), n);
            assert_eq!(packed.iter().collect::<Vec<_>>(), keys);
            assert!(keys.iter().all(|k| packed.contains(k)));
            assert!(!packed.contains(&FeatureKey {
                kind: LinkKind::Payment,
                value: 3
            }));
            assert_eq!(packed.heap_bytes(), 8 * (n + n.div_ceil(8)));
            // Checkpoints hold the plain list of keys.
            let json = serde_json::to_string(&packed).unwrap();
            assert_eq!(json, serde_json::to_string(&keys).unwrap());
            assert_eq!(serde_json::from_str::<Features>(&json).unwrap(), packed);
        }
    }
}
