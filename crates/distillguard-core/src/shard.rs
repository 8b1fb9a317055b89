//! Per-account state for the accounts routed to one shard.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::event::{AccountId, ApiEvent};
use crate::features::{AccountState, AccountSummary, EndUserSummary};
use crate::population::{
    bucket_of, PopulationDelta, METRICS, NO_BUCKET, REQUESTS_DAY, REQUESTS_HOUR, TOKENS_DAY,
    TOKENS_HOUR,
};
use crate::time::EventTime;

/// Picks the shard an account lives on. FNV-1a: stable across runs and platforms.
pub fn shard_for(account: &AccountId, shards: usize) -> usize {
    (crate::sketch::fnv1a(account.as_str().as_bytes()) % shards.max(1) as u64) as usize
}

/// Bytes of one map entry: the id's `String` header and the box pointer.
const MAP_ENTRY_BYTES: usize = 32;

/// A shard's answer to a tick. Serialisable because a detector node hands it to the node that
/// scores (`partitioned`); every field defaults, so a report from an older version still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardReport {
    pub summaries: Vec<AccountSummary>,
    /// The heavy end users of changed shared accounts, judged beside their accounts.
    pub end_users: Vec<EndUserSummary>,
    pub evicted: u64,
    /// The accounts evicted, so that the scorer forgets their findings too.
    pub evicted_ids: Vec<AccountId>,
    pub tracked: usize,
    /// Population histogram moves (changed and evicted accounts).
    pub population: PopulationDelta,
}

/// A shard's full state, serialisable for restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// Sorted by account id, so equal states give equal checkpoints. Boxed as in the shard (the
    /// serialised form is the same): a restore moves each state into place without copying it.
    pub accounts: Vec<(AccountId, Box<AccountState>)>,
    pub dirty: Vec<AccountId>,
    pub shard_count: usize,
}

/// Per-account state for the accounts routed to one shard.
#[derive(Debug)]
pub struct Shard {
    config: EngineConfig,
    shard_count: usize,
    max_accounts: usize,
    /// Boxed: the table then holds 32-byte entries, so its spare capacity (up to half the table
    /// after a resize) costs bytes, not kilobytes, per account.
    accounts: HashMap<AccountId, Box<AccountState>, ahash::RandomState>,
    dirty: Vec<AccountId>,
    /// No account here was last seen before this (epoch ms; a lower bound, exact after an idle
    /// scan; `i64::MIN` when unknown). Last-seen times only grow and a new account lowers it to
    /// its first event, so while the idle horizon is at or below it no account is idle and a
    /// tick skips the scan over every account (issue 18: at a million accounts that scan, a
    /// cache miss per account per tick, was a fifth of the engine's time).
    seen_since_ms: i64,
}

impl Shard {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        let shard_count = shard_count.max(1);
        let max_accounts = (config.max_tracked_accounts / shard_count).max(1);
        Self {
            config,
            shard_count,
            max_accounts,
            accounts: HashMap::default(),
            dirty: Vec::new(),
            seen_since_ms: i64::MIN,
        }
    }

    pub fn observe(&mut self, event: &ApiEvent) {
        let state = match self.accounts.get_mut(&event.account_id) {
            Some(state) => state,
            None => {
                self.seen_since_ms = self.seen_since_ms.min(event.timestamp.epoch_ms());
                self.accounts
                    .entry(event.account_id.clone())
                    .or_insert_with(|| Box::new(AccountState::new(event.timestamp)))
            }
        };
        if !state.dirty {
            state.dirty = true;
            self.dirty.push(event.account_id.clone());
        }
        state.observe(event, &self.config);
    }

    /// Reports accounts that changed since the last tick and evicts idle ones.
    pub fn tick(&mut self, at: EventTime) -> ShardReport {
        let dirty = std::mem::take(&mut self.dirty);
        let mut population = PopulationDelta::default();
        let mut summaries = Vec::with_capacity(dirty.len());
        let mut end_users = Vec::new();
        for id in &dirty {
            let Some(state) = self.accounts.get_mut(id) else {
                continue;
            };
            state.dirty = false;
            let summary = state.summary(id, at);
            end_users.extend(state.end_user_summaries(id, at, &self.config));
            let values = [
                summary.events_last_hour,
                summary.events_last_24h,
                summary.completion_tokens_last_24h,
                summary.completion_tokens_last_hour,
            ];
            let metrics = [REQUESTS_HOUR, REQUESTS_DAY, TOKENS_DAY, TOKENS_HOUR];
            for (metric, value) in metrics.into_iter().zip(values) {
                let new = bucket_of(value);
                population.record(metric, state.population_buckets[metric], new);
                state.population_buckets[metric] = new;
            }
            summaries.push(summary);
        }
        let evicted_ids = self.evict(at, &mut population);
        ShardReport {
            summaries,
            end_users,
            evicted: evicted_ids.len() as u64,
            evicted_ids,
            tracked: self.accounts.len(),
            population,
        }
    }

    /// Evicts idle accounts and the least recently seen above the cap; returns their ids.
    fn evict(&mut self, at: EventTime, population: &mut PopulationDelta) -> Vec<AccountId> {
        let idle_before = at.plus_ms(-self.config.idle_eviction_ms);
        let mut gone = Vec::new();
        let mut leaving = |id: &AccountId, state: &AccountState| {
            for metric in 0..METRICS {
                population.record(metric, state.population_buckets[metric], NO_BUCKET);
            }
            gone.push(id.clone());
        };
        if idle_before.epoch_ms() > self.seen_since_ms {
            let mut oldest = i64::MAX;
            self.accounts.retain(|id, s| {
                let keep = s.last_seen() >= idle_before;
                if keep {
                    oldest = oldest.min(s.last_seen().epoch_ms());
                } else {
                    leaving(id, s);
                }
                keep
            });
            self.seen_since_ms = oldest;
        }
        if self.accounts.len() > self.max_accounts {
            let mut by_age: Vec<(EventTime, AccountId)> = self
                .accounts
                .iter()
                .map(|(id, s)| (s.last_seen(), id.clone()))
                .collect();
            // The `excess` least recently seen, ties by id: a unique set whatever the map's
            // iteration order, found in linear time (this runs at every tick while at the cap).
            let excess = self.accounts.len() - self.max_accounts;
            by_age.select_nth_unstable(excess - 1);
            for (_, id) in by_age.into_iter().take(excess) {
                if let Some(state) = self.accounts.remove(&id) {
                    leaving(&id, &state);
                }
            }
        }
        // An evicted account may still sit in the dirty list of the next tick; it is skipped.
        gone
    }

    pub fn tracked(&self) -> usize {
        self.accounts.len()
    }

    /// Heap bytes of one account's state (evidence samples excluded), for the memory budget.
    pub fn account_bytes(&self, account: &AccountId) -> Option<usize> {
        self.accounts
            .get(account)
            .map(|s| std::mem::size_of::<AccountState>() + s.heap_bytes_without_samples())
            .map(|bytes| bytes + account.as_str().len() + MAP_ENTRY_BYTES)
    }

    pub fn checkpoint(&self) -> ShardCheckpoint {
        let mut accounts: Vec<(AccountId, Box<AccountState>)> = self
            .accounts
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        accounts.sort_by(|a, b| a.0.cmp(&b.0));
        ShardCheckpoint {
            accounts,
            dirty: self.dirty.clone(),
            shard_count: self.shard_count,
        }
    }

    /// The accounts sorted by id, borrowed: a checkpoint is serialised from these chunk by chunk,
    /// so taking it does not copy the shard's state.
    pub fn accounts_sorted(&self) -> Vec<(&AccountId, &AccountState)> {
        let mut accounts: Vec<(&AccountId, &AccountState)> = self
            .accounts
            .iter()
            .map(|(id, state)| (id, state.as_ref()))
            .collect();
        accounts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        accounts
    }

    /// Accounts changed since the last tick, in the order they changed.
    pub fn dirty(&self) -> &[AccountId] {
        &self.dirty
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    pub fn restore(config: EngineConfig, checkpoint: ShardCheckpoint) -> Self {
        let mut shard = Shard::new(config, checkpoint.shard_count);
        shard.accounts.reserve(checkpoint.accounts.len());
        shard.accounts.extend(checkpoint.accounts);
        shard.dirty = checkpoint.dirty;
        shard
    }
}
