//! Account id → node id, without a second copy of the id.
//!
//! A map keyed by `AccountId` holds each id twice (the key and the node's own `account`): a
//! string header and a heap allocation per account, about 60 bytes, for a million accounts. This
//! table holds only node ids and compares a candidate through the node table instead.

use hashbrown::HashTable;

use super::Node;
use crate::event::AccountId;

/// Node ids of the live nodes, found by their account id.
#[derive(Debug, Default)]
pub(super) struct AccountIndex {
    table: HashTable<u32>,
    /// Seeded per process like the maps elsewhere (accounts are clients' input): the table's
    /// layout never reaches an output, only lookups do.
    hasher: ahash::RandomState,
}

fn account(nodes: &[Option<Node>], id: u32) -> &AccountId {
    &nodes[id as usize]
        .as_ref()
        .expect("indexed nodes are live")
        .account
}

impl AccountIndex {
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.table.capacity() * 5 + 16
    }

    fn hash(&self, account: &AccountId) -> u64 {
        self.hasher.hash_one(account.as_str())
    }

    pub(super) fn get(&self, wanted: &AccountId, nodes: &[Option<Node>]) -> Option<u32> {
        self.table
            .find(self.hash(wanted), |&id| account(nodes, id) == wanted)
            .copied()
    }

    /// Indexes node `id`, which must already be in `nodes` (growing the table rehashes every
    /// indexed node through it).
    pub(super) fn insert(&mut self, id: u32, nodes: &[Option<Node>]) {
        let hash = self.hash(account(nodes, id));
        let hasher = &self.hasher;
        self.table.insert_unique(hash, id, |&other| {
            hasher.hash_one(account(nodes, other).as_str())
        });
    }

    /// Forgets node `id`, which held `account` (the node may already be gone from the table).
    pub(super) fn remove(&mut self, id: u32, account: &AccountId) {
        if let Ok(entry) = self
            .table
            .find_entry(self.hash(account), |&other| other == id)
        {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::compact::Profile;
    use crate::time::EventTime;

    fn id(name: &str) -> AccountId {
        AccountId::parse(name).unwrap()
    }

    fn node(name: &str) -> Option<Node> {
        let mut summary =
            crate::detect::testing::summarise(&[crate::detect::testing::event(0, "hello")]);
        summary.account_id = id(name);
        Some(Node {
            account: id(name),
            features: Default::default(),
            links: Vec::new(),
            cluster: None,
            profile: Profile::new(summary),
            summary_at: EventTime::from_epoch_ms(0).unwrap(),
            risk: 0.0,
        })
    }

    #[test]
    fn an_account_is_found_by_its_id_while_indexed_and_through_the_tables_growth() {
        let mut nodes = Vec::new();
        let mut index = AccountIndex::default();
        for i in 0..1_000u32 {
            nodes.push(node(&format!("acct-{i}")));
            index.insert(i, &nodes);
        }
        for i in 0..1_000u32 {
            assert_eq!(index.get(&id(&format!("acct-{i}")), &nodes), Some(i));
        }
        assert_eq!(index.get(&id("acct-1000"), &nodes), None);

        index.remove(7, &id("acct-7"));
        nodes[7] = None;
        assert_eq!(index.get(&id("acct-7"), &nodes), None);
        assert_eq!(index.len(), 999);

        // The freed slot holds another account: found under its own id, not the old one's.
        nodes[7] = node("acct-new");
        index.insert(7, &nodes);
        assert_eq!(index.get(&id("acct-new"), &nodes), Some(7));
        assert_eq!(index.get(&id("acct-7"), &nodes), None);
        assert_eq!(index.get(&id("acct-8"), &nodes), Some(8));
        assert_eq!(index.len(), 1_000);
    }
}
