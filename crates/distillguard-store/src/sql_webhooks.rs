//! The webhook outbox: events written in the same transaction as the change they report, one
//! delivery row per configured endpoint, retried by the server's delivery worker and moved to
//! `webhook_dead_letter` when they run out of attempts.

/// Generates the outbox methods for one backend.
macro_rules! impl_webhooks {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Records an event for every configured endpoint, inside the caller's transaction.
            /// `data` becomes the event's `data`; the body gets its id, type and time around it.
            pub(crate) async fn enqueue_webhook(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                event_type: &str,
                data: serde_json::Value,
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                if self.options.webhook_endpoints.is_empty() {
                    return Ok(());
                }
                let event_id: i64 = sqlx::query_scalar(
                    "INSERT INTO webhook_event (event_type, body, created_at_ms) \
                     VALUES ($1, '', $2) RETURNING event_id",
                )
                .bind(event_type)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                let body = serde_json::json!({
                    "id": format!("evt_{event_id}"),
                    "type": event_type,
                    "created_at": $crate::rows::wall(now),
                    "data": data,
                });
                sqlx::query("UPDATE webhook_event SET body = $2 WHERE event_id = $1")
                    .bind(event_id)
                    .bind(body.to_string())
                    .execute(&mut **tx)
                    .await?;
                for endpoint in &self.options.webhook_endpoints {
                    sqlx::query(
                        "INSERT INTO webhook_delivery (event_id, endpoint, next_attempt_at_ms) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(event_id)
                    .bind(endpoint)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// Deliveries whose next attempt is due, oldest event first.
            pub async fn due_webhooks(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::model::WebhookDelivery>, $crate::error::StoreError> {
                let rows: Vec<(i64, String, String, String, i32)> = sqlx::query_as(
                    "SELECT d.event_id, d.endpoint, e.event_type, e.body, d.attempts \
                     FROM webhook_delivery d JOIN webhook_event e ON e.event_id = d.event_id \
                     WHERE d.next_attempt_at_ms <= $1 ORDER BY d.event_id, d.endpoint LIMIT $2",
                )
                .bind(self.now_ms())
                .bind(i64::from(limit.clamp(1, 1_000)))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(event_id, endpoint, event_type, body, attempts)| {
                        $crate::model::WebhookDelivery {
                            event_id,
                            endpoint,
                            event_type,
                            body,
                            attempts: u32::try_from(attempts).unwrap_or(0),
                        }
                    })
                    .collect())
            }

            /// Forgets a delivered event for this endpoint (and the event once no endpoint is
            /// waiting for it and none has dead-lettered it).
            pub async fn webhook_delivered(
                &self,
                event_id: i64,
                endpoint: &str,
            ) -> Result<(), $crate::error::StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM webhook_delivery WHERE event_id = $1 AND endpoint = $2")
                    .bind(event_id)
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "DELETE FROM webhook_event WHERE event_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM webhook_delivery WHERE event_id = $1) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_dead_letter WHERE event_id = $1)",
                )
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Records a failed attempt: retried at `retry_at`, or dead-lettered when `None`.
            pub async fn webhook_failed(
                &self,
                event_id: i64,
                endpoint: &str,
                error: &str,
                retry_at: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<(), $crate::error::StoreError> {
                let mut tx = self.begin_write().await?;
                match retry_at {
                    Some(at) => {
                        sqlx::query(
                            "UPDATE webhook_delivery SET attempts = attempts + 1, \
                             next_attempt_at_ms = $3, last_error = $4 \
                             WHERE event_id = $1 AND endpoint = $2",
                        )
                        .bind(event_id)
                        .bind(endpoint)
                        .bind(at.timestamp_millis())
                        .bind(error)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO webhook_dead_letter (event_id, endpoint, attempts, \
                             last_error, failed_at_ms) SELECT event_id, endpoint, attempts + 1, $3, $4 \
                             FROM webhook_delivery WHERE event_id = $1 AND endpoint = $2",
                        )
                        .bind(event_id)
                        .bind(endpoint)
                        .bind(error)
                        .bind(self.now_ms())
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "DELETE FROM webhook_delivery WHERE event_id = $1 AND endpoint = $2",
                        )
                        .bind(event_id)
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            /// Puts a dead-lettered delivery back in the outbox, due now with a fresh count of
            /// attempts. `false`: there is no such dead letter.
            pub async fn retry_webhook_dead_letter(
                &self,
                event_id: i64,
                endpoint: &str,
            ) -> Result<bool, $crate::error::StoreError> {
                let mut tx = self.begin_write().await?;
                let moved = sqlx::query(
                    "INSERT INTO webhook_delivery (event_id, endpoint, next_attempt_at_ms) \
                     SELECT event_id, endpoint, $3 FROM webhook_dead_letter \
                     WHERE event_id = $1 AND endpoint = $2",
                )
                .bind(event_id)
                .bind(endpoint)
                .bind(self.now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM webhook_dead_letter WHERE event_id = $1 AND endpoint = $2")
                    .bind(event_id)
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(moved > 0)
            }

            /// Deliveries that ran out of attempts, newest first.
            pub async fn webhook_dead_letters(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::model::WebhookDeadLetter>, $crate::error::StoreError> {
                let rows: Vec<(i64, String, String, i32, Option<String>, i64)> = sqlx::query_as(
                    "SELECT d.event_id, d.endpoint, e.event_type, d.attempts, d.last_error, \
                     d.failed_at_ms FROM webhook_dead_letter d \
                     JOIN webhook_event e ON e.event_id = d.event_id \
                     ORDER BY d.failed_at_ms DESC, d.event_id DESC LIMIT $1",
                )
                .bind(i64::from(limit.clamp(1, 1_000)))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(event_id, endpoint, event_type, attempts, last_error, at)| {
                        $crate::model::WebhookDeadLetter {
                            event_id,
                            endpoint,
                            event_type,
                            attempts: u32::try_from(attempts).unwrap_or(0),
                            last_error,
                            failed_at: $crate::rows::wall(at),
                        }
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_webhooks;
