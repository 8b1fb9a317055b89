//! Webhook delivery: a worker that drains the store's outbox (`finding.flagged`,
//! `finding.unflagged`, `finding.confirmed`, `finding.dismissed`), signs each body and retries with exponential
//! backoff, dead-lettering deliveries that run out of attempts.
//!
//! The signature follows Stripe's scheme: `Distillguard-Signature: t=<unix seconds>,v1=<hex>`,
//! where `v1` is HMAC-SHA256 with the endpoint's secret over `<t>.<body>`. Including the time in
//! what is signed lets a receiver refuse replays older than its tolerance (`docs/integrations.md`).

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::config::{WebhookEndpoint, WebhookSettings};
use crate::metrics::Metrics;
use distillguard_store::{Store, WebhookDelivery};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Distillguard-Signature";
/// Deliveries taken from the outbox per pass.
const BATCH: u32 = 100;

/// `t=<unix_secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &[u8], unix_secs: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Wait before attempt `failures + 1`: `initial * 2^failures`, capped.
pub fn backoff(settings: &WebhookSettings, failures: u32) -> Duration {
    let initial = Duration::from_millis(settings.initial_backoff_ms.max(1));
    let cap = Duration::from_secs(settings.max_backoff_secs.max(1));
    initial
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap)
}

/// Runs until `stopped` turns true; does nothing when no endpoint is configured.
pub fn spawn(
    store: Store,
    settings: WebhookSettings,
    metrics: Metrics,
    mut stopped: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.endpoints.is_empty() {
        return None;
    }
    let client = match http_client(&settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook delivery is off: the HTTP client cannot be built");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let poll = Duration::from_millis(settings.poll_interval_ms.max(10));
        while !*stopped.borrow() {
            match store.due_webhooks(BATCH).await {
                Ok(due) => {
                    for delivery in due {
                        deliver(&store, &client, &settings, &metrics, delivery).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the webhook outbox"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }))
}

/// The delivery client: `http://` and `https://` (rustls, with the system's CA store, so a
/// receiver behind an internal CA installed there is trusted).
pub fn http_client(settings: &WebhookSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
        .build()
}

async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    metrics: &Metrics,
    delivery: WebhookDelivery,
) {
    let Some(endpoint) = settings
        .endpoints
        .iter()
        .find(|e| e.name == delivery.endpoint)
    else {
        // Removed from the configuration since the event was written: nobody to send it to.
        let _ = store
            .webhook_failed(
                delivery.event_id,
                &delivery.endpoint,
                "endpoint no longer configured",
                None,
            )
            .await;
        return;
    };
    let outcome = post(client, endpoint, &delivery).await;
    let label = |outcome: &str| {
        metrics
            .webhook_deliveries
            .with_label_values(&[&endpoint.name, outcome])
            .inc()
    };
    let result = match outcome {
        Ok(()) => {
            label("delivered");
            store
                .webhook_delivered(delivery.event_id, &endpoint.name)
                .await
        }
        Err(error) => {
            let failures = delivery.attempts + 1;
            let retry_at = (failures < settings.max_attempts.max(1)).then(|| {
                Utc::now()
                    + chrono::Duration::from_std(backoff(settings, delivery.attempts))
                        .unwrap_or_default()
            });
            label(if retry_at.is_some() {
                "failed"
            } else {
                "dead_lettered"
            });
            tracing::warn!(
                endpoint = %endpoint.name,
                event = delivery.event_id,
                attempt = failures,
                %error,
                "webhook delivery failed"
            );
            store
                .webhook_failed(delivery.event_id, &endpoint.name, &error, retry_at)
                .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, "cannot record a webhook delivery outcome");
    }
}

/// One attempt; any status outside 2xx is a failure (the body is not read).
async fn post(
    client: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    delivery: &WebhookDelivery,
) -> Result<(), String> {
    let signature = sign(
        endpoint.secret.expose().as_bytes(),
        Utc::now().timestamp(),
        &delivery.body,
    );
    let response = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Distillguard-Event", &delivery.event_type)
        .body(delivery.body.clone())
        .send()
        .await
        // The URL may carry credentials: report the kind of failure, not the request.
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("endpoint answered {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let signed = sign(b"whsec-test", 1_700_000_000, r#"{"id":"evt_1"}"#);
        assert!(signed.starts_with("t=1700000000,v1="), "{signed}");
        assert_eq!(signed.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(
            signed,
            sign(b"whsec-test", 1_700_000_001, r#"{"id":"evt_1"}"#)
        );
        assert_ne!(
            signed,
            sign(b"whsec-test", 1_700_000_000, r#"{"id":"evt_2"}"#)
        );
        assert_ne!(signed, sign(b"other", 1_700_000_000, r#"{"id":"evt_1"}"#));
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let settings = WebhookSettings {
            initial_backoff_ms: 1_000,
            max_backoff_secs: 60,
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (0..8).map(|n| backoff(&settings, n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(&settings, 40).as_secs(), 60);
    }
}
