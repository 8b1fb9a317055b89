//! The quick start fits together on one data directory, and starting over is one flag: an older
//! day sent after newer events is late, and survives a restart as late, until `serve --reset`
//! clears the state.

use std::time::Duration;

use distillguard_server::app::reset_data_dir;
use distillguard_server::config::Secret;

use crate::helpers::*;

/// (late events, watermark in seconds) once `done` holds for them, or after five seconds.
async fn late_and_watermark(app: &TestApp, done: impl Fn(f64, i64) -> bool) -> (f64, i64) {
    let mut last = (0.0, 0);
    for _ in 0..200 {
        let late = app.metric("distillguard_late_events_total").await;
        let watermark = app
            .metric("distillguard_detection_watermark_timestamp_seconds")
            .await as i64;
        last = (late, watermark);
        if done(late, watermark) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    last
}

/// The watermark after an event at `epoch_ms` (default lateness: 5 minutes), in seconds.
fn watermark_after(epoch_ms: i64) -> i64 {
    (epoch_ms - 300_000) / 1000
}

#[tokio::test]
async fn an_older_day_stays_late_across_a_restart_until_serve_reset_starts_over() {
    let settings = test_settings();
    let day = 24 * 3_600_000;

    // A newer event first, then the service restarts on the same data directory.
    let app = spawn_app_with(settings.clone()).await;
    // Three events: the clock starts at the median of its first three, so no single record sets it.
    post_accepted(
        &app,
        &[
            event("newer", T0 + day, "newer-1"),
            event("newer", T0 + day, "newer-2"),
            event("newer", T0 + day, "newer-3"),
        ],
    )
    .await;
    let newer = watermark_after(T0 + day);
    let (_, watermark) = late_and_watermark(&app, |_, w| w == newer).await;
    assert_eq!(watermark, newer);
    app.stop().await;

    // The older day is late: the watermark came back with the checkpoint.
    let app = spawn_app_with(settings.clone()).await;
    post_accepted(&app, &[event("older", T0, "older-1")]).await;
    let (late, _) = late_and_watermark(&app, |late, _| late >= 1.0).await;
    assert!(
        late >= 1.0,
        "an event a day older than the watermark is late ({late})"
    );
    app.stop().await;

    // `serve --reset` starts over: the same older event is scored, not late.
    let removed = reset_data_dir(&settings).expect("reset");
    assert!(
        !removed.is_empty(),
        "reset removed the store and the event log"
    );
    let app = spawn_app_with(settings.clone()).await;
    post_accepted(
        &app,
        &[
            event("older", T0, "older-2"),
            event("older", T0, "older-3"),
            event("older", T0, "older-4"),
        ],
    )
    .await;
    let older = watermark_after(T0);
    let (late, watermark) = late_and_watermark(&app, |_, w| w == older).await;
    assert_eq!(watermark, older, "the clock started over");
    assert_eq!(late, 0.0, "nothing is late after a reset");
    app.stop().await;

    // With an external database --reset refuses rather than leave its checkpoints behind.
    let external = distillguard_server::Settings {
        database_url: Some(Secret::new("postgres://example.invalid/db")),
        ..settings
    };
    let error = reset_data_dir(&external).expect_err("refused with a database URL");
    assert!(error.to_string().contains("database_url"), "{error}");
}
