//! Links between accounts and the clusters they form (`docs/detectors.md`, "Clusters").
//!
//! A hydra campaign spreads its traffic over many accounts so that none looks extreme alone; what
//! its accounts cannot hide is what they share: proxies, cards, a creation burst, a system prompt,
//! prompt templates and a round-the-clock rhythm. The [`Linker`] keeps, for every account the
//! scorer has seen, the values it joins on, and for every value the accounts holding it
//! ("postings"). At each tick the accounts that changed re-compute their links; links at or above
//! a threshold are the edges of a graph whose connected components are the clusters.
//!
//! Rarity is what keeps this from gluing the internet together: a value's weight falls with the
//! number of accounts holding it and is zero past `max_accounts_per_value`. Past that cap the
//! posting forgets its members for good (a corporate NAT, a cloud egress range or the official
//! SDK's user agent does not become rare again), so the cost of linking one account is bounded by
//! (values per account) × (cap).
//!
//! Everything runs in the scorer's tick, in account-id order, so the result depends on event time
//! and per-account order only, never on the number of shards or on hash-map iteration order.

mod clusters;
mod compact;
mod features;
mod index;
mod profile;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::event::AccountId;
use crate::features::AccountSummary;
use crate::time::EventTime;
use compact::{Profile, Support, Traits};

pub use clusters::{cluster_label, ClusterChange, ClusterView, Member};
pub(crate) use features::ip_keys;
use features::Features;
pub use features::{FeatureKey, LinkKind};
pub use profile::combined_summary;

/// Linking settings; defaults are documented in `docs/detectors.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkConfig {
    pub enabled: bool,
    /// Sum of per-kind weights at or above which two accounts are linked.
    pub link_threshold: f64,
    /// A value held by at most this many accounts links with its full weight ...
    pub rare_up_to: u32,
    /// ... and one held by more than this many links nothing (and stops being tracked).
    pub max_accounts_per_value: u32,
    /// A shared value whose rarity weight falls below this adds nothing: several crowded values
    /// must not add up to a link.
    pub min_value_weight: f64,
    /// Links kept per account (the strongest), bounding the graph's degree.
    pub max_links_per_account: usize,
    /// Accounts created within the same window of this length share a creation bucket.
    pub creation_window_ms: i64,
    /// Cosine similarity of two accounts' last-24-hour activity at which they move in lockstep.
    pub lockstep_similarity: f64,
    /// Hours with activity, out of 24, that both accounts need before lockstep is judged.
    pub lockstep_min_active_hours: u32,
    /// Smallest connected component reported as a cluster.
    pub min_cluster_size: usize,
    /// Distinct shared addresses (subnets) add up, to at most this many times the weight of the
    /// rarest one: crowded values stay weak however many of them two accounts share.
    pub max_values_counted: f64,
    /// An account "hops" (a rotating proxy) once its requests came from at least this many
    /// distinct /24 (IPv6 /48) networks ...
    pub pool_min_networks: u32,
    /// ... and from a new network at least every this many requests on average.
    pub pool_requests_per_network: f64,
    /// Addresses and subnets tie an account that hops to one that does not only once the two
    /// share at least this many distinct rare exact addresses (sampled); below it they add
    /// nothing to the link. A hopper uses each address of its rotation once or a few times, and
    /// each is also someone else's: a residential proxy resells people's home connections, and
    /// a phone hotspot or a café hands its users addresses from the same residential ranges. A
    /// person meets a pool account on one of them by chance.
    pub hopper_min_shared_addresses: u32,
    /// Two hopping accounts are one proxy pool's (their shared addresses and subnets add up, and
    /// the `proxy_pool` kind applies) once they share at least this many distinct rare exact
    /// addresses (sampled); below it, addresses and subnets add nothing. Accounts drawing from
    /// one pool meet on its addresses at a rate that grows with both accounts' requests; 2 would
    /// also keep out a hopping outsider that met the pool on one address, at the cost measured
    /// in `docs/evaluation.md` ("One coincidental address", issue 12).
    pub pool_min_shared_addresses: u32,
    /// A tail (the last words of a prompt) joins once the account closed at least this many
    /// prompts with it ...
    pub tail_min_uses: u32,
    /// ... and at least this share of its prompts.
    pub tail_min_share: f64,
    /// Support kinds are judged only between accounts with at least this many requests each.
    pub support_min_events: u64,
    /// Length regime: mean prompt tokens and mean completion tokens within this ratio.
    pub length_ratio: f64,
    /// Behaviour: cosine similarity of the two accounts' hour-of-day histograms at least this ...
    pub behaviour_similarity: f64,
    /// ... and single-turn shares within this distance.
    pub behaviour_turn_distance: f64,
    /// Base weights per link kind (before rarity).
    pub weights: LinkWeights,
}

/// Base weight of each kind of shared value, before the rarity factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkWeights {
    pub payment: f64,
    pub client_ip: f64,
    pub subnet: f64,
    pub user_agent: f64,
    pub system_prompt: f64,
    pub skeleton: f64,
    pub created: f64,
    pub lockstep: f64,
    /// Two hopping accounts meeting on a rarely used address (times that address's rarity).
    pub proxy_pool: f64,
    /// Near-duplicate prompts (a shared LSH band key), per distinct shared key, times its rarity.
    pub near_duplicate: f64,
    /// A shared instruction tail, per distinct shared tail, times its rarity.
    pub shared_tail: f64,
    /// Support: the same prompt/completion length regime (only on a link that holds without it).
    pub length_regime: f64,
    /// Support: the same hours of the day and session shape (only on a link that holds without
    /// it).
    pub behaviour: f64,
}

impl Default for LinkWeights {
    fn default() -> Self {
        Self {
            payment: 1.0,
            client_ip: 0.6,
            subnet: 0.3,
            user_agent: 0.3,
            system_prompt: 0.5,
            skeleton: 0.4,
            created: 0.4,
            lockstep: 0.3,
            proxy_pool: 0.4,
            near_duplicate: 0.5,
            shared_tail: 0.3,
            length_regime: 0.15,
            behaviour: 0.15,
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            link_threshold: 1.0,
            rare_up_to: 12,
            max_accounts_per_value: 200,
            min_value_weight: 0.15,
            max_links_per_account: 64,
            creation_window_ms: 30 * EventTime::MINUTE,
            lockstep_similarity: 0.9,
            lockstep_min_active_hours: 12,
            min_cluster_size: 3,
            max_values_counted: 2.0,
            pool_min_networks: 4,
            pool_requests_per_network: 4.0,
            hopper_min_shared_addresses: 2,
            pool_min_shared_addresses: 1,
            tail_min_uses: 3,
            tail_min_share: 0.1,
            support_min_events: 10,
            length_ratio: 1.5,
            behaviour_similarity: 0.8,
            behaviour_turn_distance: 0.15,
            weights: LinkWeights::default(),
        }
    }
}

impl LinkConfig {
    /// Weight of a value held by `holders` accounts: the kind's base weight while the value is
    /// rare, falling with the logarithm of its holders to zero at `max_accounts_per_value`.
    pub fn rarity_weight(&self, kind: LinkKind, holders: u32) -> f64 {
        let base = kind.base_weight(&self.weights);
        let (rare, cap) = (
            f64::from(self.rare_up_to.max(1)),
            f64::from(self.max_accounts_per_value.max(2)),
        );
        let n = f64::from(holders.max(1));
        if n <= rare {
            return base;
        }
        if n > cap || cap <= rare {
            return 0.0;
        }
        base * ((cap / n).ln() / (cap / rare).ln()).clamp(0.0, 1.0)
    }

    /// Whether two accounts prompt and are answered at the same lengths: mean prompt tokens per
    /// request and mean completion tokens per answer within `length_ratio` of each other. One
    /// operator's accounts draw one corpus through one pipeline (one `max_tokens`, one answer
    /// style); alone it says little, so it only strengthens a link that holds without it.
    pub fn same_length_regime(&self, a: &AccountSummary, b: &AccountSummary) -> bool {
        let lengths = |s: &AccountSummary| self.lengths(&Support::of(s));
        self.same_lengths(&lengths(a), &lengths(b))
    }

    /// An account's mean prompt tokens per request and mean completion tokens per answer as
    /// logarithms (`None` where not positive), once it has enough of both to be judged. Relinking
    /// compares one account with dozens: its logarithms are taken once, not once per pair.
    fn lengths(&self, s: &Support) -> Lengths {
        let min = self.support_min_events.max(1);
        if s.events < min || s.completion_known < min {
            return None;
        }
        let ln = |x: f64| (x > 0.0).then(|| x.ln());
        Some([
            ln(s.prompt_tokens as f64 / s.events as f64),
            ln(s.completion_tokens as f64 / s.completion_known as f64),
        ])
    }

    fn same_lengths(&self, a: &Lengths, b: &Lengths) -> bool {
        let (Some(a), Some(b)) = (a, b) else {
            return false;
        };
        let ratio = self.length_ratio.max(1.0).ln();
        let close = |x: Option<f64>, y: Option<f64>| matches!((x, y), (Some(x), Some(y)) if (x - y).abs() <= ratio);
        close(a[0], b[0]) && close(a[1], b[1])
    }

    /// Whether two accounts keep the same hours of the day (cosine of their hour-of-day
    /// histograms, not their last day hour by hour: no lockstep needed) and the same session
    /// shape (single-turn share). Support only: a class in one time zone shares both.
    pub fn same_behaviour(&self, a: &AccountSummary, b: &AccountSummary) -> bool {
        self.behaviour_alike(&Support::of(a), &Support::of(b), || {
            let hours = |s: &AccountSummary| profile::Normed::new(s.hour_of_day.map(f64::from));
            profile::cosine_normed(&hours(a), &hours(b))
        })
    }

    /// `similarity`: the cosine of the two accounts' hour-of-day histograms, asked for only when
    /// the session shapes match (a profile unpacks them).
    fn behaviour_alike(&self, a: &Support, b: &Support, similarity: impl FnOnce() -> f64) -> bool {
        let min = self.support_min_events.max(1);
        if a.turns_known < min || b.turns_known < min {
            return false;
        }
        let single = |s: &Support| s.single_turn as f64 / s.turns_known as f64;
        if (single(a) - single(b)).abs() > self.behaviour_turn_distance {
            return false;
        }
        similarity() >= self.behaviour_similarity
    }

    /// Whether an account's requests hop over networks the way a rotating proxy's do: many
    /// distinct /24s, a new one every few requests. A person's devices keep an address for hours
    /// (broadband leases last days; a phone behind a carrier's CGNAT changes address within a few
    /// of the carrier's ranges).
    pub fn hops_networks(&self, summary: &AccountSummary) -> bool {
        self.hops(&Traits::of(summary))
    }

    fn hops(&self, traits: &Traits) -> bool {
        let networks = traits.networks;
        networks >= f64::from(self.pool_min_networks)
            && networks * self.pool_requests_per_network.max(1.0) >= traits.events as f64
    }
}

/// What [`LinkConfig::lengths`] makes of an account's support counts.
type Lengths = Option<[Option<f64>; 2]>;

/// The accounts holding one value, in the order they came. While the value is tracked its
/// holders are its members; past the cap only their number is kept. Most values are held by one
/// account alone (its own address, its own prompts' bands): such a posting allocates nothing, and
/// every posting fits 16 bytes beside its 8-byte value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "PostingFields", into = "PostingFields")]
enum Posting {
    /// More than the cap have held the value: its members are forgotten for good.
    Common {
        holders: u32,
    },
    One {
        member: u32,
    },
    /// None (only until the posting is dropped), or two or more. Boxed so that a posting stays
    /// 16 bytes (a `Vec` is 24): the extra allocation is paid only by values two accounts share.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u32>>),
}

impl Posting {
    fn holders(&self) -> u32 {
        match self {
            Posting::Common { holders } => *holders,
            Posting::One { .. } => 1,
            Posting::Many(many) => many.len() as u32,
        }
    }

    /// `None` once the value is common.
    fn members(&self) -> Option<&[u32]> {
        match self {
            Posting::Common { .. } => None,
            Posting::One { member } => Some(std::slice::from_ref(member)),
            Posting::Many(many) => Some(many),
        }
    }

    /// One more account holds the value; past `cap` its members are forgotten.
    fn add(&mut self, id: u32, cap: u32) {
        *self = match std::mem::replace(self, Posting::Common { holders: 0 }) {
            Posting::Common { holders } => Posting::Common {
                holders: holders + 1,
            },
            held if held.holders() >= cap => Posting::Common {
                holders: held.holders() + 1,
            },
            Posting::One { member } => Posting::Many(Box::new(vec![member, id])),
            Posting::Many(many) if many.is_empty() => Posting::One { member: id },
            Posting::Many(mut many) => {
                many.push(id);
                Posting::Many(many)
            }
        };
    }

    fn remove(&mut self, id: u32) {
        match self {
            Posting::Common { holders } => *holders = holders.saturating_sub(1),
            Posting::One { member } => {
                if *member == id {
                    *self = Posting::Many(Box::default());
                }
            }
            Posting::Many(many) => {
                many.retain(|m| *m != id);
                if let [member] = many[..] {
                    *self = Posting::One { member };
                }
            }
        }
    }
}

/// Values held by exactly one account, and that account: `[low half, high half, member]`, 12
/// bytes an entry (a map of `u64` to `u32` pads its entries to 16).
#[derive(Debug, Default)]
struct Singles {
    table: hashbrown::HashTable<[u32; 3]>,
    /// Seeded per process like the maps elsewhere; the layout never reaches an output (the
    /// checkpoint sorts postings by value).
    hasher: ahash::RandomState,
}

impl Singles {
    fn hash(&self, value: u64) -> u64 {
        self.hasher.hash_one(value)
    }

    fn split(value: u64) -> [u32; 2] {
        [value as u32, (value >> 32) as u32]
    }

    fn join(entry: &[u32; 3]) -> u64 {
        u64::from(entry[0]) | u64::from(entry[1]) << 32
    }

    fn insert(&mut self, value: u64, member: u32) {
        let [low, high] = Self::split(value);
        let hasher = &self.hasher;
        self.table
            .insert_unique(self.hash(value), [low, high, member], |e| {
                hasher.hash_one(Self::join(e))
            });
    }

    /// Removes the value; returns its holder.
    fn remove(&mut self, value: u64) -> Option<u32> {
        let [low, high] = Self::split(value);
        let entry = self
            .table
            .find_entry(self.hash(value), |e| e[0] == low && e[1] == high)
            .ok()?;
        Some(entry.remove().0[2])
    }

    /// Removes the value if `member` holds it.
    fn remove_member(&mut self, value: u64, member: u32) {
        let [low, high] = Self::split(value);
        if let Ok(entry) = self.table.find_entry(self.hash(value), |e| {
            e[0] == low && e[1] == high && e[2] == member
        }) {
            entry.remove();
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.table.iter().map(|e| (Self::join(e), e[2]))
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

/// A posting as checkpoints hold it: `members` is `None` once more than the cap have held it.
#[derive(Serialize, Deserialize)]
struct PostingFields {
    holders: u32,
    members: Option<Vec<u32>>,
}

impl From<PostingFields> for Posting {
    fn from(fields: PostingFields) -> Self {
        match fields.members {
            None => Posting::Common {
                holders: fields.holders,
            },
            Some(many) => match many[..] {
                [member] => Posting::One { member },
                _ => Posting::Many(Box::new(many)),
            },
        }
    }
}

impl From<Posting> for PostingFields {
    fn from(posting: Posting) -> Self {
        Self {
            holders: posting.holders(),
            members: posting.members().map(<[u32]>::to_vec),
        }
    }
}

/// A link from one account to another, with the kinds of evidence behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub other: u32,
    pub weight: f32,
    /// Bit `LinkKind as u8` set for each kind that contributed.
    pub kinds: u16,
}

/// The values one account shares with another, per kind: the strongest, and the sum over
/// distinct values.
#[derive(Debug, Clone, Copy, Default)]
struct Shared {
    max: [f32; features::KINDS],
    sum: [f32; features::KINDS],
    /// Distinct rare exact addresses shared (crowded ones are no sign of one pool: a carrier's
    /// CGNAT, a VPN's busy exit).
    addresses: u32,
}

impl Shared {
    /// `rare`: the value is held by few enough accounts to count at its kind's full weight.
    fn add(&mut self, kind: LinkKind, weight: f32, rare: bool) {
        let k = kind as usize;
        self.max[k] = self.max[k].max(weight);
        if rare {
            self.sum[k] += weight;
            if kind == LinkKind::ClientIp {
                self.addresses += 1;
            }
        }
    }

    /// Per kind: the strongest shared value, or for kinds that add up, the sum over distinct
    /// shared *rare* values if larger, capped at `counted` times the strongest. Crowded values
    /// (a campus NAT, a carrier's CGNAT) never add up, however many two accounts share.
    /// Addresses and subnets add up only when `pool_pair` (both accounts hop networks and share
    /// enough exact addresses to be drawing from one pool): two accounts that keep their
    /// addresses for hours and still meet on two of them met on the exits of one commercial VPN
    /// (a VPN hands each session one of a few hundred exits it shares among its users), which
    /// says nothing about who stands behind them; two hoppers that met on one address and a few
    /// /24s met by chance in residential space.
    fn weights(&self, counted: f32, pool_pair: bool) -> [f32; features::KINDS] {
        let mut out = self.max;
        for kind in LinkKind::ALL
            .into_iter()
            .filter(|k| k.adds_up() && (pool_pair || !k.is_address()))
        {
            let k = kind as usize;
            out[k] = self.sum[k]
                .min(self.max[k] * counted.max(1.0))
                .max(self.max[k]);
        }
        out
    }
}

/// One account as the linker knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NodeRecordFields")]
struct Node {
    account: AccountId,
    features: Features,
    links: Vec<Link>,
    cluster: Option<u64>,
    /// The account's profile, from its latest summary, and the tick that summary was made at:
    /// the cluster is judged on its members' summaries, and lockstep compares their activity
    /// vectors.
    profile: Profile,
    summary_at: EventTime,
    /// The account's own risk at its latest scoring.
    risk: f64,
}

/// A node as checkpoints hold it: a profile, or (written before profiles) the full summary.
#[derive(Deserialize)]
struct NodeRecordFields {
    account: AccountId,
    features: Features,
    links: Vec<Link>,
    cluster: Option<u64>,
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    summary: Option<AccountSummary>,
    summary_at: EventTime,
    risk: f64,
}

impl TryFrom<NodeRecordFields> for Node {
    type Error = &'static str;

    fn try_from(record: NodeRecordFields) -> Result<Self, Self::Error> {
        let profile = match (record.profile, record.summary) {
            (Some(profile), _) if profile.is_valid() => profile,
            (Some(_), _) => return Err("a linker node's packed profile does not read back"),
            (None, Some(summary)) => Profile::new(summary),
            (None, None) => return Err("a linker node has neither a profile nor a summary"),
        };
        Ok(Self {
            account: record.account,
            features: record.features,
            links: record.links,
            cluster: record.cluster,
            profile,
            summary_at: record.summary_at,
            risk: record.risk,
        })
    }
}

/// The linker's full state, serialisable for restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkerCheckpoint {
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    postings: Vec<(FeatureKey, Posting)>,
    clusters: Vec<(u64, clusters::ClusterState)>,
    last_sweep: Option<EventTime>,
}

/// The linker's state apart from its nodes and postings, for a checkpoint streamed in parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkerHead {
    free: Vec<u32>,
    clusters: Vec<(u64, clusters::ClusterState)>,
    last_sweep: Option<EventTime>,
}

/// One slot of the linker's node table, as a streamed checkpoint reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeRecord(Option<Node>);

/// One posting (a value and the accounts holding it), as a streamed checkpoint reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostingRecord((FeatureKey, Posting));

impl LinkerCheckpoint {
    /// Reassembles a checkpoint written by [`Linker::checkpoint_head`],
    /// [`Linker::checkpoint_nodes`] and [`Linker::checkpoint_postings`].
    pub fn from_parts(
        head: LinkerHead,
        nodes: Vec<NodeRecord>,
        postings: Vec<PostingRecord>,
    ) -> Self {
        Self {
            nodes: nodes.into_iter().map(|n| n.0).collect(),
            free: head.free,
            postings: postings.into_iter().map(|p| p.0).collect(),
            clusters: head.clusters,
            last_sweep: head.last_sweep,
        }
    }
}

/// Links accounts and keeps the clusters they form.
#[derive(Debug)]
pub struct Linker {
    config: LinkConfig,
    idle_ms: i64,
    max_nodes: usize,
    index: index::AccountIndex,
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    /// Per kind, keyed by value: an 8-byte key instead of a 16-byte [`FeatureKey`] in maps
    /// holding several values per account.
    postings: [HashMap<u64, Posting, ahash::RandomState>; features::KINDS],
    /// Per kind, the values exactly one account holds (almost all of them: an account's own
    /// address, card, prompts), outside `postings`: 12 bytes a value instead of 24.
    singles: [Singles; features::KINDS],
    clusters: BTreeMap<u64, clusters::ClusterState>,
    /// Nodes whose summary arrived this tick, in arrival (account-id) order.
    changed: Vec<u32>,
    /// Nodes whose links may have changed this tick.
    touched: BTreeSet<u32>,
    last_sweep: Option<EventTime>,
    /// No node was last seen before this (a lower bound, epoch ms; `i64::MIN` when unknown, as
    /// after a restore): the hourly sweep skips its scan while nothing can be idle.
    seen_since_ms: i64,
    evicted: u64,
}

/// What relinking reads of accounts' packed profiles, unpacked once per tick. A linked account
/// is met again by each of its changed neighbours' relinks in the same tick (a proxy pool's
/// members relink against the same dozens of accounts), and unpacking its hours of the day and
/// its last day for every meeting was about 3 % of all replay CPU (support and lockstep). Lives
/// for one tick only: profiles change between ticks (`Linker::observe`), never during one.
#[derive(Default)]
struct Unpacked {
    /// Support counts with [`LinkConfig::lengths`].
    support: HashMap<u32, (Support, Lengths), ahash::RandomState>,
    hours: HashMap<u32, profile::Normed, ahash::RandomState>,
    /// [`Linker::lockstep_activity`] at the tick's time.
    lockstep: HashMap<u32, Option<profile::Normed>, ahash::RandomState>,
}

impl Unpacked {
    fn support(&mut self, linker: &Linker, id: u32) -> (Support, Lengths) {
        *self.support.entry(id).or_insert_with(|| {
            let support = linker.node(id).profile.support();
            (support, linker.config.lengths(&support))
        })
    }

    fn hours(&mut self, linker: &Linker, id: u32) -> &profile::Normed {
        self.hours.entry(id).or_insert_with(|| {
            profile::Normed::new(linker.node(id).profile.hour_of_day().map(f64::from))
        })
    }

    /// `at` is the same for every call in one tick.
    fn lockstep(&mut self, linker: &Linker, id: u32, at: EventTime) -> Option<&profile::Normed> {
        self.lockstep
            .entry(id)
            .or_insert_with(|| linker.lockstep_activity(id, at).map(profile::Normed::new))
            .as_ref()
    }
}

impl Linker {
    /// `idle_ms` and `max_nodes` follow the shards' eviction, so the linker forgets an account
    /// when its state is gone.
    pub fn new(config: LinkConfig, idle_ms: i64, max_nodes: usize) -> Self {
        Self {
            config,
            idle_ms,
            max_nodes: max_nodes.max(1),
            index: index::AccountIndex::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            postings: std::array::from_fn(|_| HashMap::default()),
            singles: std::array::from_fn(|_| Singles::default()),
            clusters: BTreeMap::new(),
            changed: Vec::new(),
            touched: BTreeSet::new(),
            last_sweep: None,
            seen_since_ms: i64::MIN,
            evicted: 0,
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Bytes per part of the linker's state (table capacities and heap, allocator overhead
    /// aside), for the `memory_1m` bench's breakdown.
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        use std::mem::size_of;
        let live = || self.nodes.iter().flatten();
        let table = |cap: usize, entry: usize| cap * entry + cap + 16;
        let postings: usize = self
            .postings
            .iter()
            .map(|m| table(m.capacity(), size_of::<(u64, Posting)>()))
            .sum();
        let singles: usize = self.singles.iter().map(|s| table(s.capacity(), 12)).sum();
        let shared: usize = self
            .postings
            .iter()
            .flat_map(|m| m.values())
            .map(|p| match p {
                Posting::Many(many) => size_of::<Vec<u32>>() + many.capacity() * 4,
                _ => 0,
            })
            .sum();
        let single = self.singles.iter().map(Singles::len).sum::<usize>();
        vec![
            (
                "node table",
                self.nodes.capacity() * size_of::<Option<Node>>(),
            ),
            (
                "account ids",
                live().map(|n| n.account.as_str().len()).sum(),
            ),
            (
                "feature keys",
                live().map(|n| n.features.heap_bytes()).sum(),
            ),
            (
                "links",
                live().map(|n| n.links.capacity() * size_of::<Link>()).sum(),
            ),
            (
                "packed profiles",
                live().map(|n| n.profile.heap_bytes()).sum(),
            ),
            ("account index", self.index.heap_bytes()),
            ("posting tables, shared values", postings),
            ("posting tables, one holder", singles),
            ("posting member lists", shared),
            ("(postings held by one account)", single),
            (
                "(postings)",
                self.postings.iter().map(|m| m.len()).sum::<usize>() + single,
            ),
        ]
    }

    /// Accounts the linker holds.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// Takes an account's new summary (kept as the account's profile) and its own risk. Call in
    /// account-id order.
    pub fn observe(&mut self, summary: AccountSummary, at: EventTime, risk: f64) {
        if !self.config.enabled {
            return;
        }
        let features = features::extract(&summary, &self.config);
        let id = match self.index.get(&summary.account_id, &self.nodes) {
            Some(id) => {
                let node = self.node_mut(id);
                node.profile = Profile::new(summary);
                node.summary_at = at;
                node.risk = risk;
                id
            }
            None => self.insert(summary, at, risk),
        };
        let seen = self.node(id).profile.traits.last_seen.epoch_ms();
        self.seen_since_ms = self.seen_since_ms.min(seen);
        let old = std::mem::replace(&mut self.node_mut(id).features, Features::new(&features));
        // Both lists are sorted: membership by binary search, not a scan per key.
        for key in old.iter().filter(|k| features.binary_search(k).is_err()) {
            self.detach(key, id);
        }
        for key in features.iter().filter(|k| !old.contains(k)) {
            self.attach(*key, id);
        }
        self.changed.push(id);
    }

    fn insert(&mut self, summary: AccountSummary, at: EventTime, risk: f64) -> u32 {
        let node = Node {
            account: summary.account_id.clone(),
            features: Features::default(),
            links: Vec::new(),
            cluster: None,
            profile: Profile::new(summary),
            summary_at: at,
            risk,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert(id, &self.nodes);
        id
    }

    fn node(&self, id: u32) -> &Node {
        self.nodes[id as usize]
            .as_ref()
            .expect("linked nodes are live")
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        self.nodes[id as usize]
            .as_mut()
            .expect("linked nodes are live")
    }

    /// The posting of a value two or more accounts hold (or held: a common value stays common).
    /// A value one account holds links nobody, so its posting is never read.
    fn posting(&self, key: &FeatureKey) -> Option<&Posting> {
        self.postings[key.kind as usize].get(&key.value)
    }

    fn all_postings(&self) -> impl Iterator<Item = (FeatureKey, Cow<'_, Posting>)> + '_ {
        LinkKind::ALL.into_iter().flat_map(move |kind| {
            let key = move |value: u64| FeatureKey { kind, value };
            let shared = self.postings[kind as usize]
                .iter()
                .map(move |(value, p)| (key(*value), Cow::Borrowed(p)));
            let single = self.singles[kind as usize]
                .iter()
                .map(move |(value, member)| (key(value), Cow::Owned(Posting::One { member })));
            shared.chain(single)
        })
    }

    /// Puts a posting read back from a checkpoint in its table.
    fn put_posting(&mut self, key: FeatureKey, posting: Posting) {
        match posting {
            Posting::One { member } => self.singles[key.kind as usize].insert(key.value, member),
            posting => {
                self.postings[key.kind as usize].insert(key.value, posting);
            }
        }
    }

    fn attach(&mut self, key: FeatureKey, id: u32) {
        let cap = self.config.max_accounts_per_value;
        let kind = key.kind as usize;
        if cap > 0 && !self.postings[kind].contains_key(&key.value) {
            match self.singles[kind].remove(key.value) {
                None => {
                    self.singles[kind].insert(key.value, id);
                    return;
                }
                Some(member) => {
                    self.postings[kind].insert(key.value, Posting::One { member });
                }
            }
        }
        self.postings[kind]
            .entry(key.value)
            .or_insert(Posting::Many(Box::default()))
            .add(id, cap);
    }

    fn detach(&mut self, key: FeatureKey, id: u32) {
        let kind = key.kind as usize;
        let postings = &mut self.postings[kind];
        let Some(posting) = postings.get_mut(&key.value) else {
            self.singles[kind].remove_member(key.value, id);
            return;
        };
        posting.remove(id);
        match posting {
            Posting::One { member } => {
                let member = *member;
                postings.remove(&key.value);
                self.singles[kind].insert(key.value, member);
            }
            posting if posting.holders() == 0 => {
                postings.remove(&key.value);
            }
            _ => {}
        }
    }

    /// Re-links the accounts that changed, forgets idle ones and updates the clusters. Returns
    /// the clusters whose membership or members changed, in cluster-id order.
    pub fn finish_tick(&mut self, at: EventTime) -> Vec<ClusterChange> {
        if !self.config.enabled {
            return Vec::new();
        }
        let changed = std::mem::take(&mut self.changed);
        // Profiles do not change while the tick relinks: what several relinks read of one
        // account is unpacked once.
        let mut unpacked = Unpacked::default();
        for id in &changed {
            self.relink(*id, at, &mut unpacked);
        }
        self.sweep(at);
        let mut touched = std::mem::take(&mut self.touched);
        touched.extend(changed.iter().copied());
        self.recluster(&touched, &changed, at)
    }

    /// Recomputes one account's links from the postings it is in.
    fn relink(&mut self, id: u32, at: EventTime, unpacked: &mut Unpacked) {
        let lockstep = self.config.weights.lockstep as f32;
        // The account's own activity, aligned once per relink (not once per candidate); `None`
        // when it is too sparse for lockstep with anyone.
        let own = if lockstep > 0.0 {
            unpacked.lockstep(self, id, at).copied()
        } else {
            None
        };
        let threshold = self.config.link_threshold - 1e-6;
        // The values this account shares with another that still link, strongest first.
        let node = self.node(id);
        let mut held: Vec<(f32, LinkKind, &[u32])> = node
            .features
            .iter()
            .filter_map(|key| {
                let posting = self.posting(&key)?;
                let members = posting.members()?;
                let weight = self.config.rarity_weight(key.kind, posting.holders());
                // A crowded value below `min_value_weight` adds nothing.
                (weight > 0.0
                    && weight >= self.config.min_value_weight
                    && members.iter().any(|m| *m != id))
                .then_some((weight as f32, key.kind, members))
            })
            .collect();
        held.sort_by(|a, b| b.0.total_cmp(&a.0));
        // A hopping account may also be linked by the proxy-pool kind, at most its base weight.
        let pool = self.config.weights.proxy_pool as f32;
        let hops = self.config.hops(&node.profile.traits);
        let own_hops = pool > 0.0 && hops;
        // Prefix filtering: a link's weight is at most the sum of the weights of the values the
        // two accounts share, plus lockstep and the pool kind. An account first met in value `k`
        // (strongest first) shares nothing stronger, so its link weighs at most the sum of values
        // `k..` plus those two; once that is below the threshold (with a margin far above f32
        // rounding), the remaining values only add weight to accounts already met and meet no new
        // ones. The accounts skipped are exactly ones the threshold filter below would have
        // dropped.
        let mut rest: f64 = held.iter().map(|(w, ..)| f64::from(*w)).sum::<f64>()
            + if own.is_some() {
                f64::from(lockstep)
            } else {
                0.0
            }
            + if own_hops { f64::from(pool) } else { 0.0 };
        let mut meeting = 0;
        for (weight, ..) in &held {
            if rest + 1e-4 * (1.0 + rest.abs()) < threshold {
                break;
            }
            rest -= f64::from(*weight);
            meeting += 1;
        }
        // Every (other account, kind, weight) met in those values, grouped by account in
        // account-number order (sorting one flat list costs far less than a tree insert per
        // pair).
        let mut shared: Vec<(u32, LinkKind, f32)> = Vec::with_capacity(
            held[..meeting]
                .iter()
                .map(|(_, _, members)| members.len())
                .sum(),
        );
        for (weight, kind, members) in &held[..meeting] {
            shared.extend(
                members
                    .iter()
                    .filter(|m| **m != id)
                    .map(|m| (*m, *kind, *weight)),
            );
        }
        shared.sort_unstable_by_key(|(other, ..)| *other);
        let mut candidates: Vec<(u32, Shared)> = Vec::new();
        for (other, kind, weight) in shared {
            match candidates.last_mut() {
                Some((last, values)) if *last == other => {
                    values.add(kind, weight, self.is_rare(kind, weight))
                }
                _ => {
                    let mut values = Shared::default();
                    values.add(kind, weight, self.is_rare(kind, weight));
                    candidates.push((other, values));
                }
            }
        }
        if !candidates.is_empty() {
            for (weight, kind, members) in &held[meeting..] {
                for other in members.iter().filter(|m| **m != id) {
                    if let Ok(i) = candidates.binary_search_by_key(other, |(o, _)| *o) {
                        candidates[i]
                            .1
                            .add(*kind, *weight, self.is_rare(*kind, *weight));
                    }
                }
            }
        }
        let ip_base = self.config.weights.client_ip as f32;
        let counted = self.config.max_values_counted as f32;
        let (pool_min, hopper_min) = (
            self.config.pool_min_shared_addresses.max(1),
            self.config.hopper_min_shared_addresses.max(1),
        );
        let mut links: Vec<Link> = candidates
            .into_iter()
            .map(|(other, values)| {
                // An account that hops uses each address of its rotation once or a few times,
                // and every one of them is also someone else's (a residential proxy resells
                // people's home connections): fewer than `hopper_min_shared_addresses` rare
                // addresses in common with it, and the /24s around them, are a coincidence that
                // grows with both accounts' address counts, not a tie. Two hoppers meeting on
                // rarely used addresses are a shared pool (`pool_min_shared_addresses`).
                let other_hops = self.config.hops(&self.node(other).profile.traits);
                let needed = match (hops, other_hops) {
                    (true, true) => pool_min,
                    (false, false) => 0,
                    _ => hopper_min,
                };
                let lone = values.addresses < needed;
                let pool_pair = hops && other_hops && !lone;
                let mut per_kind = values.weights(counted, pool_pair);
                if lone {
                    per_kind[LinkKind::ClientIp as usize] = 0.0;
                    per_kind[LinkKind::Subnet as usize] = 0.0;
                }
                // Weighted by the rarity of the strongest shared address.
                let best_ip = values.max[LinkKind::ClientIp as usize];
                if own_hops && pool_pair && best_ip > 0.0 && ip_base > 0.0 {
                    per_kind[LinkKind::ProxyPool as usize] = pool * (best_ip / ip_base).min(1.0);
                }
                if let Some(own) = &own {
                    // Lockstep is judged only where it can matter: when the link, with lockstep
                    // added, reaches the threshold. The weight with it is summed exactly as below
                    // and f32 addition is monotone, so a candidate skipped here would have been
                    // dropped by the threshold filter anyway: the links are the same.
                    let mut with = per_kind;
                    with[LinkKind::Lockstep as usize] = lockstep;
                    if f64::from(with.iter().sum::<f32>()) >= threshold
                        && unpacked.lockstep(self, other, at).is_some_and(|theirs| {
                            profile::cosine_normed(own, theirs) >= self.config.lockstep_similarity
                        })
                    {
                        per_kind = with;
                    }
                }
                // Content and support kinds only strengthen a link that holds without them (a
                // stronger link makes the cluster's case count for more); they never make one.
                // Measured: as link makers, near-duplicates and tails drawn from one everyday
                // prompt repertoire glued half the simulated benign population together.
                let content =
                    LinkKind::CONTENT.map(|kind| std::mem::take(&mut per_kind[kind as usize]));
                if f64::from(per_kind.iter().sum::<f32>()) >= threshold {
                    for (kind, weight) in LinkKind::CONTENT.into_iter().zip(content) {
                        per_kind[kind as usize] = weight;
                    }
                    self.add_support(&mut per_kind, id, other, unpacked);
                }
                let kinds = per_kind
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w > 0.0)
                    .fold(0u16, |mask, (k, _)| mask | (1 << k));
                Link {
                    other,
                    weight: per_kind.iter().sum(),
                    kinds,
                }
            })
            .filter(|link| f64::from(link.weight) >= threshold)
            .collect();
        // The strongest first, ties by account id: the same links whatever the node numbering.
        links.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| self.node(a.other).account.cmp(&self.node(b.other).account))
        });
        links.truncate(self.config.max_links_per_account);
        let old = std::mem::replace(&mut self.node_mut(id).links, links.clone());
        for gone in old
            .iter()
            .filter(|o| !links.iter().any(|l| l.other == o.other))
        {
            self.node_mut(gone.other).links.retain(|l| l.other != id);
            self.touched.insert(gone.other);
        }
        for link in &links {
            let reverse = Link { other: id, ..*link };
            let other = self.node_mut(link.other);
            match other.links.iter_mut().find(|l| l.other == id) {
                Some(existing) => *existing = reverse,
                None => other.links.push(reverse),
            }
            self.touched.insert(link.other);
        }
    }

    /// Adds the support kinds two linked accounts show (`docs/detectors.md`, "Support kinds").
    fn add_support(
        &self,
        per_kind: &mut [f32; features::KINDS],
        own: u32,
        theirs: u32,
        unpacked: &mut Unpacked,
    ) {
        let weights = &self.config.weights;
        if weights.length_regime <= 0.0 && weights.behaviour <= 0.0 {
            return;
        }
        let ((a, a_lengths), (b, b_lengths)) =
            (unpacked.support(self, own), unpacked.support(self, theirs));
        if weights.length_regime > 0.0 && self.config.same_lengths(&a_lengths, &b_lengths) {
            per_kind[LinkKind::LengthRegime as usize] = weights.length_regime as f32;
        }
        if weights.behaviour > 0.0
            && self.config.behaviour_alike(&a, &b, || {
                let own = *unpacked.hours(self, own);
                profile::cosine_normed(&own, unpacked.hours(self, theirs))
            })
        {
            per_kind[LinkKind::Behaviour as usize] = weights.behaviour as f32;
        }
    }

    /// Whether a shared value of `kind` with this rarity weight is rare (held by at most
    /// `rare_up_to` accounts: its kind's full weight).
    fn is_rare(&self, kind: LinkKind, weight: f32) -> bool {
        f64::from(weight) >= kind.base_weight(&self.config.weights) * 0.999
    }

    /// An account's hourly counts of the last day aligned to `at`, if it was active in enough
    /// hours to be judged for lockstep.
    fn lockstep_activity(&self, id: u32, at: EventTime) -> Option<[f64; 24]> {
        let node = self.node(id);
        // The aligned vector is non-zero only where the summary's own vector is: test the cheap
        // count first.
        let min_hours = self.config.lockstep_min_active_hours as usize;
        if usize::from(node.profile.traits.active_hours) < min_hours {
            return None;
        }
        let activity = profile::activity_at(&node.profile.activity(), node.summary_at, at);
        (activity.iter().filter(|v| **v > 0.0).count() >= min_hours).then_some(activity)
    }

    /// Forgets accounts idle past the shards' eviction age (once per event-time hour), and the
    /// least recently seen above the account cap (at once: a flood of new accounts within an
    /// hour must not grow the linker past the cap).
    fn sweep(&mut self, at: EventTime) {
        let over_cap = self.index.len() > self.max_nodes;
        if !over_cap
            && self
                .last_sweep
                .is_some_and(|last| at.epoch_ms() - last.epoch_ms() < EventTime::HOUR)
        {
            return;
        }
        self.last_sweep = Some(at);
        let idle_before = at.plus_ms(-self.idle_ms);
        // No node can be idle yet: skip the scan (at a million accounts, a scan and sort of
        // every node each hour cost more than the linking itself).
        if !over_cap && idle_before.epoch_ms() <= self.seen_since_ms {
            return;
        }
        let leaving = self.leaving(idle_before);
        self.evicted += leaving.len() as u64;
        for id in leaving {
            self.remove(id);
        }
    }

    /// The nodes to forget, oldest first (last seen, then account id): the idle ones and, above
    /// the cap, the least recently seen. Updates the lower bound of the last-seen times left.
    fn leaving(&mut self, idle_before: EventTime) -> Vec<u32> {
        let live = self.nodes.iter().enumerate().filter_map(|(i, n)| {
            n.as_ref()
                .map(|n| (n.profile.traits.last_seen, &n.account, i as u32))
        });
        let excess = self.index.len().saturating_sub(self.max_nodes);
        let (mut by_age, oldest_kept): (Vec<_>, i64) = if excess == 0 {
            // Only the idle ones need ordering; the rest only give the new lower bound.
            let mut oldest = i64::MAX;
            let idle = live
                .filter(|(seen, ..)| {
                    let idle = *seen < idle_before;
                    if !idle {
                        oldest = oldest.min(seen.epoch_ms());
                    }
                    idle
                })
                .collect();
            (idle, oldest)
        } else {
            (live.collect(), i64::MIN)
        };
        by_age.sort();
        let leaving: Vec<u32> = by_age
            .iter()
            .enumerate()
            .filter(|(rank, (seen, ..))| *rank < excess || *seen < idle_before)
            .map(|(_, (.., id))| *id)
            .collect();
        self.seen_since_ms = if excess == 0 {
            oldest_kept
        } else {
            // Sorted: the first node that stays is the oldest left.
            by_age
                .get(leaving.len())
                .map_or(i64::MAX, |(seen, ..)| seen.epoch_ms())
        };
        leaving
    }

    /// Accounts forgotten so far (idle, or over the cap), by this process.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn remove(&mut self, id: u32) {
        let Some(node) = self.nodes[id as usize].take() else {
            return;
        };
        for key in node.features.iter() {
            self.detach(key, id);
        }
        for link in &node.links {
            if let Some(other) = self.nodes[link.other as usize].as_mut() {
                other.links.retain(|l| l.other != id);
            }
            self.touched.insert(link.other);
        }
        if let Some(cluster) = node.cluster {
            if let Some(state) = self.clusters.get_mut(&cluster) {
                state.members.retain(|m| *m != id);
                state.dirty = true;
            }
        }
        self.touched.remove(&id);
        self.index.remove(id, &node.account);
        self.free.push(id);
    }

    /// The small part of a streamed checkpoint; nodes and postings follow in chunks.
    pub fn checkpoint_head(&self) -> LinkerHead {
        LinkerHead {
            free: self.free.clone(),
            clusters: self
                .clusters
                .iter()
                .map(|(id, c)| (*id, c.clone()))
                .collect(),
            last_sweep: self.last_sweep,
        }
    }

    /// The node table in slot order, borrowed (each item reads back as a [`NodeRecord`]).
    pub fn checkpoint_nodes(&self) -> impl ExactSizeIterator<Item = impl Serialize + '_> + '_ {
        self.nodes.iter()
    }

    /// The postings sorted by value, borrowed (each item reads back as a [`PostingRecord`]).
    pub fn checkpoint_postings(&self) -> impl ExactSizeIterator<Item = impl Serialize + '_> + '_ {
        let mut postings: Vec<(FeatureKey, Cow<'_, Posting>)> = self.all_postings().collect();
        postings.sort_unstable_by_key(|(k, _)| *k);
        postings.into_iter()
    }

    pub fn checkpoint(&self) -> LinkerCheckpoint {
        let mut postings: Vec<(FeatureKey, Posting)> = self
            .all_postings()
            .map(|(k, p)| (k, p.into_owned()))
            .collect();
        postings.sort_by_key(|(k, _)| *k);
        let head = self.checkpoint_head();
        LinkerCheckpoint {
            nodes: self.nodes.clone(),
            free: head.free,
            postings,
            clusters: head.clusters,
            last_sweep: head.last_sweep,
        }
    }

    pub fn restore(
        config: LinkConfig,
        idle_ms: i64,
        max_nodes: usize,
        checkpoint: LinkerCheckpoint,
    ) -> Self {
        let mut linker = Linker::new(config, idle_ms, max_nodes);
        linker.nodes = checkpoint.nodes;
        for id in 0..linker.nodes.len() as u32 {
            if linker.nodes[id as usize].is_some() {
                linker.index.insert(id, &linker.nodes);
            }
        }
        linker.free = checkpoint.free;
        for (key, posting) in checkpoint.postings {
            linker.put_posting(key, posting);
        }
        linker.clusters = checkpoint.clusters.into_iter().collect();
        linker.last_sweep = checkpoint.last_sweep;
        linker
    }
}

#[cfg(test)]
mod tests;
