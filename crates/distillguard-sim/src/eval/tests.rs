use distillguard_core::finding::{AccountFinding, ClusterFinding, Severity};

use super::*;
use crate::labels::Label;

const T0: i64 = 1_793_577_600_000;
const MIN: i64 = 60_000;

fn at(minutes: i64) -> EventTime {
    EventTime::from_epoch_ms(T0 + minutes * MIN).unwrap()
}

fn finding(id: &str, flagged_at: Option<i64>) -> AccountFinding {
    AccountFinding {
        activity: None,
        account_id: id.to_string(),
        score: if flagged_at.is_some() { 0.9 } else { 0.3 },
        severity: Severity::High,
        flagged: flagged_at.is_some(),
        cluster_id: None,
        first_flagged_at: flagged_at.map(at),
        clustered_at: None,
        end_user: None,
        first_seen: at(0),
        last_seen: at(100),
        events: 10,
        signals: Vec::new(),
        samples: Vec::new(),
    }
}

fn cluster(id: &str, members: &[&str], flagged_at: Option<i64>) -> ClusterFinding {
    ClusterFinding {
        cluster_id: id.to_string(),
        score: 0.9,
        severity: Severity::High,
        flagged: flagged_at.is_some(),
        members: members.iter().map(|m| m.to_string()).collect(),
        first_flagged_at: flagged_at.map(at),
        first_seen: at(0),
        last_seen: at(100),
        links: Vec::new(),
        signals: Vec::new(),
    }
}

/// Ten benign accounts, a four-account hydra campaign and a one-account bulk campaign.
fn labels() -> Labels {
    let mut labels = Labels::new();
    for i in 0..10 {
        labels.insert(
            format!("b{i}"),
            Label::benign(if i < 8 {
                "casual_chat"
            } else {
                "production_app"
            }),
        );
    }
    for i in 0..4 {
        labels.insert(format!("h{i}"), Label::attack("hydra_cluster", "hydra-1"));
    }
    labels.insert("x0".into(), Label::attack("bulk_harvest", "bulk-1"));
    labels
}

fn first_events() -> HashMap<String, EventTime> {
    labels()
        .keys()
        .enumerate()
        .map(|(i, id)| (id.clone(), at(10 + i as i64)))
        .collect()
}

/// Five-minute ticks and five minutes of allowed lateness, the engine's defaults.
const DELAY: FlagDelay = FlagDelay {
    tick_ms: 5 * MIN,
    allowed_lateness_ms: 5 * MIN,
};

fn traffic(first_events: HashMap<String, EventTime>) -> Traffic {
    Traffic {
        first_events,
        campaign_requests: HashMap::new(),
    }
}

#[test]
fn precision_recall_and_fpr_count_accounts_against_their_labels() {
    let report = Report {
        events: 1_000,
        late_events: 3,
        ahead_events: 0,
        accounts: vec![
            finding("h0", Some(60)),
            finding("h1", Some(90)),
            finding("x0", Some(30)),
            finding("b8", Some(50)),
            finding("b0", None),
        ],
        clusters: Vec::new(),
    };
    let e = evaluate(&report, &labels(), &traffic(first_events()), DELAY);
    assert_eq!(
        (e.overall.true_positives, e.overall.false_positives),
        (3, 1)
    );
    assert_eq!(
        (e.overall.false_negatives, e.overall.true_negatives),
        (2, 9)
    );
    assert!((e.overall.precision - 0.75).abs() < 1e-9);
    assert!((e.overall.recall - 0.6).abs() < 1e-9);
    assert!((e.overall.f1 - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-9);
    assert!((e.overall.false_positive_rate - 0.1).abs() < 1e-9);
    let app = e
        .archetypes
        .iter()
        .find(|r| r.archetype == "production_app")
        .unwrap();
    assert_eq!((app.accounts, app.flagged), (2, 1));
    assert!((app.rate - 0.5).abs() < 1e-9);
    assert_eq!(e.late_events, 3);
}

#[test]
fn time_to_detect_runs_from_the_campaigns_first_event_in_event_time() {
    let report = Report {
        accounts: vec![finding("h2", Some(100)), finding("h3", Some(40))],
        ..Report::default()
    };
    let mut firsts = first_events();
    firsts.insert("h0".into(), at(5));
    let e = evaluate(&report, &labels(), &traffic(firsts), DELAY);
    let hydra = e
        .campaigns
        .iter()
        .find(|c| c.campaign == "hydra-1")
        .unwrap();
    assert!(hydra.detected);
    assert_eq!(hydra.flagged, 2);
    // Earliest flag (minute 40) minus the campaign's earliest first event (minute 5).
    assert_eq!(hydra.time_to_detect_ms, Some(35 * MIN));
    let row = e
        .archetypes
        .iter()
        .find(|r| r.archetype == "hydra_cluster")
        .unwrap();
    assert_eq!(row.ttd_median_ms, Some(35 * MIN));
    assert_eq!(row.ttd_p90_ms, Some(95 * MIN));
    let bulk = e.campaigns.iter().find(|c| c.campaign == "bulk-1").unwrap();
    assert!(!bulk.detected);
    assert_eq!(bulk.time_to_detect_ms, None);
}

#[test]
fn members_of_a_flagged_cluster_count_as_detected_and_purity_is_measured() {
    let report = Report {
        accounts: vec![finding("h0", None)],
        clusters: vec![
            cluster("c1", &["h0", "h1", "h2", "b0"], Some(70)),
            cluster("c2", &["b1", "b2"], None),
        ],
        ..Report::default()
    };
    let e = evaluate(&report, &labels(), &traffic(first_events()), DELAY);
    assert_eq!(e.overall.true_positives, 3);
    assert_eq!(e.overall.false_positives, 1);
    assert_eq!(e.clusters.flagged_clusters, 1);
    assert_eq!(e.clusters.flagged_purity, Some(0.75));
    let hydra = e
        .campaigns
        .iter()
        .find(|c| c.campaign == "hydra-1")
        .unwrap();
    assert_eq!(hydra.clusters, 1);
    assert_eq!(hydra.largest_cluster_share, Some(0.75));
    assert_eq!(hydra.largest_cluster_purity, Some(0.75));
    assert!(hydra.time_to_detect_ms.is_some());
}

#[test]
fn thresholds_report_every_bound_that_is_missed() {
    let report = Report {
        accounts: vec![finding("b0", Some(1)), finding("x0", Some(2))],
        ..Report::default()
    };
    let e = evaluate(&report, &labels(), &traffic(first_events()), DELAY);
    let failures = check(
        &e,
        &Thresholds {
            min_recall: Some(0.5),
            max_fpr: Some(0.05),
            min_precision: Some(0.4),
            archetype_rates: vec![
                ("bulk_harvest".into(), 1.0),
                ("hydra_cluster".into(), 0.5),
                ("nope".into(), 0.1),
            ],
            ..Thresholds::default()
        },
    );
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert!(failures.iter().any(|f| f.starts_with("recall")));
    assert!(failures
        .iter()
        .any(|f| f.starts_with("false-positive rate")));
    assert!(failures
        .iter()
        .any(|f| f.starts_with("hydra_cluster recall")));
    assert!(failures.iter().any(|f| f.contains("nope")));
    assert!(check(&e, &Thresholds::default()).is_empty());
}

#[test]
fn unlabelled_flagged_accounts_are_counted_apart() {
    let report = Report {
        accounts: vec![finding("stranger", Some(1))],
        ..Report::default()
    };
    let e = evaluate(&report, &labels(), &traffic(first_events()), DELAY);
    assert_eq!(e.unlabelled_accounts, 1);
    assert_eq!(e.overall.false_positives, 0);
    assert!(render(&e).contains("not in the labels"));
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    assert_eq!(percentile(&values, 50.0), Some(5));
    assert_eq!(percentile(&values, 90.0), Some(9));
    assert_eq!(percentile(&[7], 90.0), Some(7));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(human_duration(3_900_000), "1h05m");
    assert_eq!(human_duration(750_000), "12m30s");
}

fn clustered(id: &str, minutes: i64) -> AccountFinding {
    AccountFinding {
        activity: None,
        clustered_at: Some(at(minutes)),
        end_user: None,
        ..finding(id, Some(minutes))
    }
}

#[test]
fn time_to_cluster_is_when_ninety_percent_of_the_campaign_had_joined_its_flagged_cluster() {
    // The campaign's first event is at minute 5; its four accounts joined at 30, 50, 80 and 200.
    let report = Report {
        accounts: vec![
            clustered("h0", 30),
            clustered("h1", 50),
            clustered("h2", 80),
            clustered("h3", 200),
        ],
        clusters: vec![cluster("c1", &["h0", "h1", "h2", "h3"], Some(30))],
        ..Report::default()
    };
    let mut firsts = first_events();
    firsts.insert("h0".into(), at(5));
    let e = evaluate(&report, &labels(), &traffic(firsts), DELAY);
    let hydra = e
        .campaigns
        .iter()
        .find(|c| c.campaign == "hydra-1")
        .unwrap();
    // ceil(0.9 × 4) = 4 accounts: the last one joined at minute 200.
    assert_eq!(hydra.time_to_cluster_ms, Some(195 * MIN));
    assert!(render(&e).contains("3h15m"));
    let gate = |hours: i64| Thresholds {
        cluster_archetypes: vec!["hydra_cluster".into()],
        cluster_min_purity: 0.95,
        cluster_max_time_ms: hours * 60 * MIN,
        ..Thresholds::default()
    };
    assert!(check(&e, &gate(6)).is_empty(), "{:?}", check(&e, &gate(6)));
    let failures = check(&e, &gate(3));
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("hydra-1 was not found as one flagged cluster"));
}

#[test]
fn a_benign_account_inside_a_flagged_attack_cluster_fails_the_cluster_gate() {
    let report = Report {
        accounts: ["h0", "h1", "h2", "h3", "b0"]
            .iter()
            .map(|id| clustered(id, 20))
            .collect(),
        clusters: vec![cluster("c1", &["h0", "h1", "h2", "h3", "b0"], Some(20))],
        ..Report::default()
    };
    let e = evaluate(&report, &labels(), &traffic(first_events()), DELAY);
    assert_eq!(e.clusters.benign_in_attack_clusters, 1);
    let failures = check(
        &e,
        &Thresholds {
            cluster_archetypes: vec!["hydra_cluster".into()],
            cluster_min_purity: 0.95,
            cluster_max_time_ms: 6 * 60 * MIN,
            ..Thresholds::default()
        },
    );
    // Purity 0.8 fails the campaign, and the benign member fails on its own.
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures
        .iter()
        .any(|f| f.contains("benign accounts are in flagged attack clusters")));
}

#[test]
fn leaked_counts_the_requests_answered_before_the_flag_could_act() {
    // h0 sends a request every ten minutes from minute 0 to 90 and is flagged on its request of
    // minute 42: the flag acts at the end of that tick (45) plus the allowed lateness (50), so
    // the six requests at 0..=50 were answered. h1 is never flagged: all its requests leaked.
    // x0 is flagged through a cluster at minute 10.
    let report = Report {
        accounts: vec![finding("h0", Some(42))],
        clusters: vec![cluster("c1", &["x0"], Some(10))],
        ..Report::default()
    };
    let mut t = traffic(first_events());
    let times = |minutes: &[i64]| minutes.iter().map(|m| T0 + m * MIN).collect::<Vec<_>>();
    t.campaign_requests
        .insert("h0".into(), times(&[0, 10, 20, 30, 40, 49, 50, 60, 70, 80]));
    t.campaign_requests.insert("h1".into(), times(&[5, 15]));
    t.campaign_requests.insert("x0".into(), times(&[1, 30]));
    let e = evaluate(&report, &labels(), &t, DELAY);
    let hydra = e
        .campaigns
        .iter()
        .find(|c| c.campaign == "hydra-1")
        .unwrap();
    assert_eq!(hydra.requests, 12);
    // h0: 0, 10, 20, 30, 40, 49 before minute 50; h1: both.
    assert_eq!(hydra.leaked, Some(8.0 / 12.0));
    let bulk = e.campaigns.iter().find(|c| c.campaign == "bulk-1").unwrap();
    // Flagged at minute 10 through its cluster: acts from 15 + 5 = 20, so only minute 1 leaked.
    assert_eq!(bulk.leaked, Some(0.5));
    assert_eq!(e.overall.attack_requests, 14);
    assert_eq!(e.overall.leaked, Some(9.0 / 14.0));
    let row = e
        .archetypes
        .iter()
        .find(|r| r.archetype == "hydra_cluster")
        .unwrap();
    assert_eq!(row.leaked, hydra.leaked);
    assert!(render(&e).contains("leaked 0.643 of 14 campaign requests"));
    let gate = Thresholds {
        max_leaked: Some(0.5),
        archetype_leaked: vec![("bulk_harvest".into(), 0.5), ("hydra_cluster".into(), 0.6)],
        ..Thresholds::default()
    };
    let failures = check(&e, &gate);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().any(|f| f.starts_with("leaked 0.643")));
    assert!(failures
        .iter()
        .any(|f| f.starts_with("hydra_cluster leaked 0.667")));
}

#[test]
fn traffic_keeps_only_campaign_requests_and_a_shared_accounts_attacking_end_users() {
    let mut labels = labels();
    labels.insert(
        "r0".into(),
        Label::attack("reseller_hidden", "reseller-1").with_end_users(["eu-bad".to_string()]),
    );
    let mut t = Traffic::default();
    t.observe(&labels, "b0", None, at(3));
    t.observe(&labels, "h0", Some("anyone"), at(2));
    t.observe(&labels, "h0", None, at(1));
    t.observe(&labels, "r0", Some("eu-good"), at(4));
    t.observe(&labels, "r0", Some("eu-bad"), at(5));
    t.observe(&labels, "r0", None, at(6));
    assert_eq!(t.first_events["h0"], at(1));
    assert_eq!(t.first_events["r0"], at(4));
    assert_eq!(t.first_events.len(), 3);
    assert_eq!(t.campaign_requests["h0"].len(), 2);
    assert_eq!(t.campaign_requests["r0"], vec![at(5).epoch_ms()]);
    assert!(!t.campaign_requests.contains_key("b0"));
}

#[test]
fn a_flag_acts_at_the_end_of_its_tick_plus_the_allowed_lateness() {
    assert_eq!(DELAY.acts_from(at(42)), T0 + 50 * MIN);
    // An event on a tick boundary belongs to the tick that starts there.
    assert_eq!(DELAY.acts_from(at(45)), T0 + 55 * MIN);
}

#[test]
fn per_account_times_run_from_each_accounts_own_first_request() {
    // h0 starts at 0 and is flagged alone at 60; h1 starts 20 h later and joins the flagged
    // cluster 2 h after its own first request; h2 starts late and is caught 13 h after it;
    // h3 is never caught.
    let mut joined = finding("h1", Some(20 * 60 + 120));
    joined.clustered_at = Some(at(20 * 60 + 120));
    let mut late = finding("h2", Some(30 * 60 + 13 * 60));
    late.clustered_at = Some(at(30 * 60 + 13 * 60));
    let report = Report {
        accounts: vec![finding("h0", Some(60)), joined, late],
        clusters: vec![cluster("cl-1", &["h1", "h2", "x0"], Some(20 * 60))],
        ..Report::default()
    };
    let mut firsts = first_events();
    for (id, minutes) in [("h0", 0), ("h1", 20 * 60), ("h2", 30 * 60), ("h3", 40 * 60)] {
        firsts.insert(id.into(), at(minutes));
    }
    let e = evaluate(&report, &labels(), &traffic(firsts), DELAY);
    let hydra = e
        .campaigns
        .iter()
        .find(|c| c.campaign == "hydra-1")
        .unwrap();
    let d = &hydra.own_detect;
    assert_eq!((d.accounts, d.reached), (4, 3));
    assert_eq!(d.median_ms, Some(120 * MIN));
    assert_eq!(d.p90_ms, Some(13 * 60 * MIN));
    assert!((d.within_window.unwrap() - 0.5).abs() < 1e-9);
    let k = &hydra.own_cluster;
    assert_eq!((k.accounts, k.reached), (4, 2));
    assert!((k.within_window.unwrap() - 0.25).abs() < 1e-9);
    assert!(render(&e).contains("from its own first request"));
}
