use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::OnceLock;

use super::*;
use crate::actors::MODEL_NEW;

fn small(seed: u64) -> Scenario {
    Scenario {
        seed,
        accounts: 400,
        days: 2,
        volume: 0.3,
        ..Scenario::default()
    }
}

fn run(scenario: &Scenario) -> (Vec<ApiEvent>, SimulationSummary) {
    let mut events = Vec::new();
    let summary = simulate(scenario, &PromptBook::builtin(), |e| {
        events.push(e.clone());
        Ok::<(), SimError>(())
    })
    .unwrap();
    (events, summary)
}

fn shared() -> &'static (Vec<ApiEvent>, SimulationSummary) {
    static RUN: OnceLock<(Vec<ApiEvent>, SimulationSummary)> = OnceLock::new();
    RUN.get_or_init(|| run(&small(7)))
}

fn ndjson(scenario: &Scenario) -> (Vec<u8>, String) {
    let mut bytes = Vec::new();
    let summary = simulate(scenario, &PromptBook::builtin(), |e| {
        serde_json::to_writer(&mut bytes, e).map_err(|err| SimError::Scenario(err.to_string()))?;
        bytes.push(b'\n');
        Ok::<(), SimError>(())
    })
    .unwrap();
    (bytes, serde_json::to_string(&summary.labels).unwrap())
}

fn of_archetype<'a>(summary: &'a SimulationSummary, archetype: &str) -> BTreeSet<&'a str> {
    summary
        .labels
        .iter()
        .filter(|(_, l)| l.archetype == archetype)
        .map(|(id, _)| id.as_str())
        .collect()
}

#[test]
fn the_same_seed_gives_byte_identical_traffic_and_labels() {
    let scenario = Scenario {
        accounts: 200,
        days: 1,
        volume: 0.2,
        ..Scenario::default()
    };
    let (traffic_a, labels_a) = ndjson(&scenario);
    let (traffic_b, labels_b) = ndjson(&scenario);
    assert!(traffic_a.len() > 100_000, "{}", traffic_a.len());
    assert!(
        traffic_a == traffic_b,
        "traffic differs between two runs with the same seed"
    );
    assert_eq!(labels_a, labels_b);
    let (traffic_c, _) = ndjson(&Scenario {
        seed: 2,
        ..scenario
    });
    assert!(
        traffic_a != traffic_c,
        "a different seed must give different traffic"
    );
}

#[test]
fn output_is_in_time_order_except_for_the_bounded_disorder() {
    let (events, _) = shared();
    let disorder = small(7).disorder_ms;
    let mut newest = 0i64;
    let mut out_of_order = 0;
    for event in events {
        let ts = event.timestamp.epoch_ms();
        assert!(
            ts >= newest - disorder,
            "event {ts} is more than {disorder} ms behind {newest}"
        );
        if ts < newest {
            out_of_order += 1;
        }
        newest = newest.max(ts);
    }
    assert!(
        out_of_order > 0,
        "the disorder option should produce some out-of-order events"
    );
    let start = small(7).start.epoch_ms();
    assert!(events
        .iter()
        .all(|e| (start..small(7).end_ms()).contains(&e.timestamp.epoch_ms())));
}

#[test]
fn every_sender_is_labelled_and_every_label_sent_traffic() {
    let (events, summary) = shared();
    let senders: BTreeSet<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
    let labelled: BTreeSet<&str> = summary.labels.keys().map(String::as_str).collect();
    assert_eq!(senders, labelled);
    for archetype in crate::labels::BENIGN_ARCHETYPES
        .iter()
        .chain(crate::labels::ATTACK_ARCHETYPES)
    {
        assert!(
            !of_archetype(summary, archetype).is_empty(),
            "no {archetype} accounts"
        );
    }
    assert!(summary.labels.len() > 300, "{}", summary.labels.len());
}

#[test]
fn request_ids_are_unique_and_events_carry_the_realistic_fields() {
    let (events, _) = shared();
    let ids: HashSet<&str> = events
        .iter()
        .filter_map(|e| e.request_id.as_deref())
        .collect();
    assert_eq!(ids.len(), events.len());
    for e in events.iter().take(5_000) {
        assert!(e.client_ip.is_some() && e.user_agent.is_some() && e.api_key_id.is_some());
        assert!(e.payment_fingerprint.is_some() && e.account_created_at.is_some());
        assert!(e.usage.prompt_tokens.is_some() && e.status.is_some() && e.latency_ms.is_some());
        assert!(e.account_created_at.unwrap() <= e.timestamp);
        assert!(e.messages.unwrap() >= 1);
    }
}

#[test]
fn hydra_accounts_share_infrastructure_and_split_the_load_evenly() {
    let (events, summary) = shared();
    let hydra: BTreeSet<&str> = summary
        .labels
        .iter()
        .filter(|(_, l)| l.campaign.as_deref() == Some("hydra-1"))
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(hydra.len() >= 30, "{}", hydra.len());
    let mine: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| hydra.contains(e.account_id.as_str()))
        .collect();
    let cards: BTreeSet<&str> = mine
        .iter()
        .filter_map(|e| e.payment_fingerprint.as_deref())
        .collect();
    assert!(cards.len() <= 5, "{cards:?}");
    let systems: BTreeSet<&str> = mine
        .iter()
        .filter_map(|e| e.system_prompt.as_deref())
        .collect();
    assert_eq!(systems.len(), 1);
    let created: BTreeSet<i64> = mine
        .iter()
        .map(|e| e.account_created_at.unwrap().epoch_ms())
        .collect();
    assert!(created.last().unwrap() - created.first().unwrap() <= 30 * 60_000);
    let mut per_account: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &mine {
        *per_account.entry(e.account_id.as_str()).or_default() += 1;
    }
    let (lo, hi) = (
        per_account.values().min().unwrap(),
        per_account.values().max().unwrap(),
    );
    assert!(hi - lo <= 1, "round-robin split should be even: {lo}..{hi}");
    let prompts: HashSet<&str> = mine.iter().filter_map(|e| e.prompt.as_deref()).collect();
    assert_eq!(
        prompts.len(),
        mine.len(),
        "the sharded corpus is never repeated"
    );
}

#[test]
fn the_pivot_campaign_moves_most_traffic_to_the_new_model_within_hours() {
    let (events, summary) = shared();
    let pivot = of_archetype(summary, "pivot");
    let release = summary.release_at.epoch_ms();
    let mine = events
        .iter()
        .filter(|e| pivot.contains(e.account_id.as_str()));
    let before_new = mine
        .clone()
        .filter(|e| e.timestamp.epoch_ms() < release && e.model.as_str() == MODEL_NEW)
        .count();
    assert_eq!(before_new, 0);
    let late: Vec<&ApiEvent> = mine
        .filter(|e| e.timestamp.epoch_ms() > release + 8 * HOUR)
        .collect();
    let moved = late
        .iter()
        .filter(|e| e.model.as_str() == MODEL_NEW)
        .count();
    assert!(moved * 10 > late.len() * 7, "{moved} of {}", late.len());
}

#[test]
fn reasoning_harvest_asks_for_logprobs_and_several_samples() {
    let (events, summary) = shared();
    let harvest = of_archetype(summary, "reasoning_harvest");
    let mine: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| harvest.contains(e.account_id.as_str()))
        .collect();
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|e| e.params.logprobs == Some(true) && e.params.n.unwrap_or(1) > 1));
}

#[test]
fn low_and_slow_is_single_turn_never_repeated_and_modest_per_account() {
    let (events, summary) = shared();
    let slow = of_archetype(summary, "low_and_slow");
    let mine: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| slow.contains(e.account_id.as_str()))
        .collect();
    let prompts: HashSet<&str> = mine.iter().filter_map(|e| e.prompt.as_deref()).collect();
    assert_eq!(prompts.len(), mine.len());
    assert!(mine.iter().all(|e| e.messages.unwrap() <= 2));
    let per_account_per_day = mine.len() as f64 / slow.len() as f64 / 2.0;
    assert!(per_account_per_day < 150.0, "{per_account_per_day}");
}

type Footprint<'a> = (BTreeSet<&'a str>, BTreeSet<String>, BTreeSet<&'a str>);

#[test]
fn enterprise_accounts_share_nat_addresses_and_one_user_agent() {
    let (events, summary) = shared();
    let enterprise = of_archetype(summary, "enterprise");
    let mut by_card: BTreeMap<&str, Footprint> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| enterprise.contains(e.account_id.as_str()))
    {
        let entry = by_card
            .entry(e.payment_fingerprint.as_deref().unwrap())
            .or_default();
        entry.0.insert(e.account_id.as_str());
        entry.1.insert(e.client_ip.unwrap().to_string());
        entry.2.insert(e.user_agent.as_deref().unwrap());
    }
    let (accounts, ips, agents) = by_card.values().max_by_key(|v| v.0.len()).unwrap();
    assert!(accounts.len() >= 4);
    assert!(ips.len() <= 3);
    assert_eq!(agents.len(), 1);
}

fn benign_events<'a>(events: &'a [ApiEvent], summary: &SimulationSummary) -> Vec<&'a ApiEvent> {
    events
        .iter()
        .filter(|e| !summary.labels[e.account_id.as_str()].is_attack())
        .collect()
}

#[test]
fn every_infrastructure_trait_of_the_attacks_also_occurs_in_benign_traffic() {
    let (events, summary) = shared();
    let benign = benign_events(events, summary);
    // The hydra's user agent is the popular SDK build.
    let hydra_agents: BTreeSet<&str> = events
        .iter()
        .filter(|e| summary.labels[e.account_id.as_str()].archetype == "hydra_cluster")
        .filter_map(|e| e.user_agent.as_deref())
        .collect();
    for agent in hydra_agents {
        assert!(
            benign
                .iter()
                .any(|e| e.user_agent.as_deref() == Some(agent)),
            "{agent}"
        );
    }
    // Commercial proxy / VPN exits carry benign users too.
    assert!(benign.iter().any(|e| {
        let ip = e.client_ip.unwrap().to_string();
        ip.starts_with("203.0.113.") || ip.starts_with("198.51.100.")
    }));
    // Several benign accounts created within 30 minutes on one payment method (an enterprise).
    let mut by_card: BTreeMap<&str, BTreeSet<(i64, &str)>> = BTreeMap::new();
    for e in &benign {
        by_card
            .entry(e.payment_fingerprint.as_deref().unwrap())
            .or_default()
            .insert((
                e.account_created_at.unwrap().epoch_ms(),
                e.account_id.as_str(),
            ));
    }
    let burst = by_card.values().any(|accounts| {
        let times: Vec<i64> = accounts.iter().map(|(t, _)| *t).collect();
        times.windows(4).any(|w| w[3] - w[0] <= 30 * 60_000)
    });
    assert!(burst, "no benign creation burst");
}

#[test]
fn every_behavioural_trait_of_the_attacks_also_occurs_in_benign_traffic() {
    let (events, summary) = shared();
    let benign = benign_events(events, summary);
    assert!(benign
        .iter()
        .any(|e| e.params.logprobs == Some(true) && e.params.top_logprobs.is_some()));
    assert!(benign.iter().any(|e| e.params.n.unwrap_or(1) > 1));
    assert!(benign.iter().any(|e| e
        .system_prompt
        .as_deref()
        .is_some_and(|s| s.contains("step by step") || s.contains("Think through each step"))));
    assert!(benign.iter().any(|e| e
        .prompt
        .as_deref()
        .is_some_and(|p| p.contains("step by step"))));
    let release = summary.release_at.epoch_ms();
    assert!(benign
        .iter()
        .any(|e| e.model.as_str() == MODEL_NEW && e.timestamp.epoch_ms() < release + 6 * HOUR));
    // Round-the-clock traffic: benign accounts busy between 2 and 5 am UTC.
    assert!(
        benign
            .iter()
            .filter(|e| (2..5).contains(&e.timestamp.hour_of_day()))
            .count()
            > 1_000
    );
    // Some benign account sends more per day than the quietest bulk harvester.
    let mut per_account: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events {
        *per_account.entry(e.account_id.as_str()).or_default() += 1;
    }
    let quietest_bulk = of_archetype(summary, "bulk_harvest")
        .iter()
        .map(|a| per_account[a])
        .min()
        .unwrap();
    let busiest_benign = per_account
        .iter()
        .filter(|(a, _)| !summary.labels[**a].is_attack())
        .map(|(_, n)| *n)
        .max()
        .unwrap();
    assert!(
        busiest_benign > quietest_bulk,
        "{busiest_benign} <= {quietest_bulk}"
    );
}

#[test]
fn burners_are_brand_new_with_their_own_cards_and_brand_new_busy_accounts_also_occur_in_benign_traffic(
) {
    let (events, summary) = shared();
    // Per account: creation time and first request, then the requests of its first hour.
    let mut start: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for e in events {
        let (created, ts) = (
            e.account_created_at.unwrap().epoch_ms(),
            e.timestamp.epoch_ms(),
        );
        let entry = start.entry(e.account_id.as_str()).or_insert((created, ts));
        entry.1 = entry.1.min(ts);
    }
    let mut first_hour: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events {
        let (_, first) = start[e.account_id.as_str()];
        if e.timestamp.epoch_ms() < first + HOUR {
            *first_hour.entry(e.account_id.as_str()).or_default() += 1;
        }
    }
    let burners = of_archetype(summary, "burner_accounts");
    assert!(burners.len() >= 4, "{}", burners.len());
    for id in &burners {
        let (created, first) = start[id];
        assert!(
            first - created <= HOUR,
            "{id} waited {} ms",
            first - created
        );
    }
    let cards: BTreeSet<&str> = events
        .iter()
        .filter(|e| burners.contains(e.account_id.as_str()))
        .filter_map(|e| e.payment_fingerprint.as_deref())
        .collect();
    assert_eq!(cards.len(), burners.len());
    let busy_newcomers = start
        .iter()
        .filter(|(id, (created, first))| {
            !summary.labels[**id].is_attack() && first - created <= HOUR && first_hour[*id] >= 20
        })
        .count();
    assert!(busy_newcomers >= 2, "{busy_newcomers}");
}
