//! Event time that one record cannot move: far-future and far-past events injected into a
//! simulated day (with its hydra campaign) change no finding, in the single-threaded engine
//! (`replay`) and in the threaded pipeline (`serve`).

use distillguard_core::engine::{Engine, EngineConfig};
use distillguard_core::event::ApiEvent;
use distillguard_core::finding::Report;
use distillguard_core::time::EventTime;

use crate::helpers::*;

/// 2199-01-01, 1970-01-02, a day ahead, thirty days ahead, a day behind, 2010: each stands alone
/// among normal traffic, from an account of the campaign or a stranger.
fn with_outliers(events: &[ApiEvent], campaign: &[String]) -> (Vec<ApiEvent>, usize) {
    let mut out = Vec::with_capacity(events.len() + 64);
    let mut injected = 0;
    for (i, event) in events.iter().enumerate() {
        out.push(event.clone());
        if i % 700 != 350 {
            continue;
        }
        let t = event.timestamp.epoch_ms();
        let when = [
            7_258_118_400_000,
            86_400_000,
            t + EventTime::DAY,
            t + 30 * EventTime::DAY,
            t - EventTime::DAY,
            1_262_304_000_000,
        ][injected % 6];
        let mut outlier = event.clone();
        outlier.timestamp = EventTime::from_epoch_ms(when).unwrap();
        if injected % 2 == 0 {
            outlier.account_id =
                distillguard_core::event::AccountId::parse(&campaign[injected % campaign.len()])
                    .unwrap();
        }
        outlier.request_id = Some(format!("outlier-{injected}"));
        out.push(outlier);
        injected += 1;
    }
    (out, injected)
}

fn replay(events: &[ApiEvent]) -> Report {
    let mut engine = Engine::new(EngineConfig::default(), 2);
    for event in events {
        engine.process(event);
    }
    engine.finish();
    engine.report()
}

fn findings_only(report: &Report) -> Report {
    Report {
        late_events: 0,
        ahead_events: 0,
        ..report.clone()
    }
}

#[test]
fn outliers_in_time_leave_the_replay_findings_unchanged() {
    let (events, hydra) = simulated_hydra_day();
    let (poisoned, injected) = with_outliers(&events, &hydra);
    assert!(injected >= 6, "{injected}");
    let expected = replay(&events);
    let got = replay(&poisoned);
    assert!(expected.accounts.iter().filter(|a| a.flagged).count() >= 3);
    assert!(!expected.clusters.is_empty());
    assert_eq!(findings_only(&got), findings_only(&expected));
    assert_eq!(
        (got.late_events + got.ahead_events) - (expected.late_events + expected.ahead_events),
        injected as u64,
        "every outlier is counted, none applied"
    );
}

#[tokio::test]
async fn outliers_in_time_leave_the_pipeline_findings_unchanged() {
    use distillguard_server::metrics::Metrics;
    use distillguard_server::pipeline::{DiscardSink, Pipeline};
    let (events, hydra) = simulated_hydra_day();
    let (poisoned, _) = with_outliers(&events, &hydra);
    let mut settings = test_settings();
    settings.engine.shards = 3;
    let config = distillguard_server::app::pipeline_config(&settings);
    let run = |events: Vec<ApiEvent>| {
        let config = config.clone();
        async move {
            let pipeline = Pipeline::start(config, Metrics::new(), Box::new(DiscardSink));
            for chunk in events.chunks(997) {
                pipeline.submit(chunk.to_vec()).await.unwrap();
            }
            tokio::task::spawn_blocking(move || pipeline.finish_blocking())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let expected = run(events).await;
    let got = run(poisoned).await;
    assert_eq!(findings_only(&got), findings_only(&expected));
    assert_eq!(
        findings_only(&expected),
        findings_only(&replay(&simulated_hydra_day().0))
    );
}
