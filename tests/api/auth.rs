//! Bearer tokens and roles.

use crate::helpers::*;

#[tokio::test]
async fn ingest_without_a_token_is_401() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .body(event("a", T0, "r1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    app.stop().await;
}

#[tokio::test]
async fn ingest_with_an_unknown_token_is_401() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth("not-a-configured-token")
        .header("content-type", "application/json")
        .body(event("a", T0, "r1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test]
async fn ingest_with_an_analyst_token_is_403_and_with_admin_is_accepted() {
    let app = spawn_app().await;
    let post = |token: &'static str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(event("a", T0, token).to_string())
            .send()
    };
    assert_eq!(post(ANALYST_TOKEN).await.unwrap().status().as_u16(), 403);
    assert_eq!(post(ADMIN_TOKEN).await.unwrap().status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn with_no_tokens_configured_loopback_clients_need_none() {
    let mut settings = test_settings();
    settings.auth_tokens.clear();
    let app = spawn_app_with(settings).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .body(event("a", T0, "r1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn binding_a_public_address_without_tokens_is_refused_at_start() {
    let mut settings = test_settings();
    settings.auth_tokens.clear();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let error = distillguard_server::Application::build(settings)
        .await
        .err()
        .expect("must refuse");
    assert!(error.to_string().contains("authentication off"), "{error}");
}
