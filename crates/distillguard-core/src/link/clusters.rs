//! Connected components over the links, kept incrementally with stable ids.
//!
//! Only components that hold an account whose links may have changed this tick are recomputed
//! (a breadth-first walk from each such account); every other component is unchanged because
//! nothing in it moved. Ids are then handed out deterministically:
//! - components are visited largest first, ties by their smallest account id;
//! - each keeps the id of the old cluster it holds most members of (ties: the older cluster, then
//!   the smaller id) that no larger component has claimed, so on a merge the survivor is the
//!   cluster contributing most members, and on a split the largest part keeps the id;
//! - a component with no unclaimed old id gets a new one, a hash of its smallest account id and
//!   the tick;
//! - an old id nobody claimed is retired, naming the cluster most of its members went to.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::Linker;
use crate::event::AccountId;
use crate::features::AccountSummary;
use crate::sketch::hash::{fast_hash, mix64};
use crate::time::EventTime;

/// One live cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterState {
    /// Sorted by account id.
    pub members: Vec<u32>,
    pub created: EventTime,
    /// Lost a member outside a recomputed component (eviction).
    pub dirty: bool,
}

/// What happened to a cluster at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChange {
    /// New, or its membership or one of its members changed: re-judge it.
    Updated { id: u64 },
    /// Its members merged into another cluster or fell apart.
    Retired { id: u64, merged_into: Option<u64> },
}

/// One member of a cluster as the scorer judges it.
pub struct Member<'a> {
    pub account: &'a AccountId,
    /// The member's latest summary (as its profile gives it back), made at `summary_at`.
    pub summary: AccountSummary,
    pub summary_at: EventTime,
    /// The member's own risk at that scoring.
    pub risk: f64,
    /// Its strongest link inside the cluster.
    pub best_link: f64,
}

/// A cluster's members as the scorer judges them.
pub struct ClusterView<'a> {
    pub id: u64,
    pub created: EventTime,
    pub members: Vec<Member<'a>>,
}

/// Display form of a cluster id.
pub fn cluster_label(id: u64) -> String {
    format!("cl-{id:016x}")
}

impl Linker {
    pub(super) fn recluster(
        &mut self,
        touched: &BTreeSet<u32>,
        changed: &[u32],
        at: EventTime,
    ) -> Vec<ClusterChange> {
        let components = self.components(touched);
        // Old clusters these components cut through, with their members before this tick.
        let mut affected: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for node in components.iter().flatten() {
            if let Some(id) = self.node(*node).cluster {
                if let Some(state) = self.clusters.get(&id) {
                    affected.entry(id).or_insert_with(|| state.members.clone());
                }
            }
        }
        let changed: HashSet<u32> = changed.iter().copied().collect();
        let min_size = self.config.min_cluster_size.max(2);
        let mut claimed: BTreeSet<u64> = BTreeSet::new();
        let mut changes = Vec::new();
        let mut assignments: Vec<(Vec<u32>, Option<u64>)> = Vec::with_capacity(components.len());
        for component in components {
            if component.len() < min_size {
                assignments.push((component, None));
                continue;
            }
            let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
            for node in &component {
                if let Some(id) = self.node(*node).cluster {
                    *votes.entry(id).or_default() += 1;
                }
            }
            let keep = votes
                .iter()
                .filter(|(id, _)| !claimed.contains(*id) && self.clusters.contains_key(*id))
                .max_by(|a, b| {
                    a.1.cmp(b.1)
                        .then_with(|| self.clusters[b.0].created.cmp(&self.clusters[a.0].created))
                        .then_with(|| b.0.cmp(a.0))
                })
                .map(|(id, _)| *id);
            let id = keep.unwrap_or_else(|| self.new_cluster_id(component[0], at));
            claimed.insert(id);
            let state = self.clusters.entry(id).or_insert(ClusterState {
                members: Vec::new(),
                created: at,
                dirty: false,
            });
            let moved = state.members != component || state.dirty;
            state.members.clone_from(&component);
            state.dirty = false;
            if moved || component.iter().any(|n| changed.contains(n)) {
                changes.push(ClusterChange::Updated { id });
            }
            assignments.push((component, Some(id)));
        }
        for (component, id) in &assignments {
            for node in component {
                self.node_mut(*node).cluster = *id;
            }
        }
        for (old, members) in affected {
            if claimed.contains(&old) {
                continue;
            }
            self.clusters.remove(&old);
            let mut went: BTreeMap<u64, usize> = BTreeMap::new();
            for member in members {
                if let Some(Some(node)) = self.nodes.get(member as usize) {
                    if let Some(now) = node.cluster {
                        *went.entry(now).or_default() += 1;
                    }
                }
            }
            let merged_into = went
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(id, _)| id);
            changes.push(ClusterChange::Retired {
                id: old,
                merged_into,
            });
        }
        // Clusters that lost a member to eviction without any other change.
        let dirty: Vec<u64> = self
            .clusters
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(id, _)| *id)
            .collect();
        for id in dirty {
            let state = self.clusters.get_mut(&id).expect("listed above");
            state.dirty = false;
            if state.members.len() < min_size {
                let members = std::mem::take(&mut state.members);
                self.clusters.remove(&id);
                for member in members {
                    self.node_mut(member).cluster = None;
                }
                changes.push(ClusterChange::Retired {
                    id,
                    merged_into: None,
                });
            } else {
                changes.push(ClusterChange::Updated { id });
            }
        }
        changes.sort_by_key(|c| match c {
            ClusterChange::Updated { id } | ClusterChange::Retired { id, .. } => *id,
        });
        changes
    }

    /// Connected components holding the touched nodes, each sorted by account id, ordered
    /// largest first and then by smallest account id.
    fn components(&self, touched: &BTreeSet<u32>) -> Vec<Vec<u32>> {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut components = Vec::new();
        let mut queue = VecDeque::new();
        for start in touched {
            if self.nodes.get(*start as usize).is_none_or(Option::is_none) || !seen.insert(*start) {
                continue;
            }
            let mut component = vec![*start];
            queue.push_back(*start);
            while let Some(node) = queue.pop_front() {
                for link in &self.node(node).links {
                    if seen.insert(link.other) {
                        component.push(link.other);
                        queue.push_back(link.other);
                    }
                }
            }
            component.sort_by(|a, b| self.node(*a).account.cmp(&self.node(*b).account));
            components.push(component);
        }
        components.sort_by(|a, b| {
            b.len()
                .cmp(&a.len())
                .then_with(|| self.node(a[0]).account.cmp(&self.node(b[0]).account))
        });
        components
    }

    fn new_cluster_id(&self, first: u32, at: EventTime) -> u64 {
        let mut id =
            mix64(fast_hash(self.node(first).account.as_str().as_bytes()) ^ at.epoch_ms() as u64);
        while self.clusters.contains_key(&id) {
            id = mix64(id);
        }
        id
    }

    /// A live cluster's members with their latest summaries and own risks.
    pub fn cluster(&self, id: u64) -> Option<ClusterView<'_>> {
        let state = self.clusters.get(&id)?;
        Some(ClusterView {
            id,
            created: state.created,
            members: state
                .members
                .iter()
                .map(|m| {
                    let node = self.node(*m);
                    let best_link = node
                        .links
                        .iter()
                        .filter(|l| self.node(l.other).cluster == Some(id))
                        .map(|l| f64::from(l.weight))
                        .fold(0.0, f64::max);
                    Member {
                        account: &node.account,
                        summary: node.profile.summary(&node.account),
                        summary_at: node.summary_at,
                        risk: node.risk,
                        best_link,
                    }
                })
                .collect(),
        })
    }

    /// The cluster an account belongs to, if any.
    pub fn cluster_of(&self, account: &AccountId) -> Option<u64> {
        self.node(self.index.get(account, &self.nodes)?).cluster
    }
}
