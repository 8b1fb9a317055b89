//! The `[sources.*]` snippets of docs/integrations.md parse into the decoders' options.

use distillguard_ingest::kong::KongAccountField;
use distillguard_ingest::litellm::{LitellmAccountField, LitellmModelField};
use distillguard_ingest::{EnvoyDecoder, KongDecoder, LitellmDecoder, OtlpDecoder};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sources {
    litellm: Option<LitellmDecoder>,
    kong: Option<KongDecoder>,
    envoy: Option<EnvoyDecoder>,
    otlp: Option<OtlpDecoder>,
}

#[derive(Deserialize)]
struct Config {
    sources: Sources,
}

#[test]
fn the_documented_toml_parses_into_the_decoders() {
    let config: Config = toml::from_str(
        r#"
        [sources.litellm]
        account_fields = ["end_user", "api_key_hash"]
        model_field = "model"

        [sources.kong]
        account_fields = ["consumer_custom_id", { header = "x-account-id" }]

        [sources.envoy]
        account_keys = ["x-tenant"]
        prompt_key = "x-prompt"

        [sources.otlp]
        account_attributes = ["tenant.id", "enduser.id"]
        prompt_attribute = "app.prompt"
        "#,
    )
    .unwrap();
    let litellm = config.sources.litellm.unwrap();
    assert_eq!(
        litellm.account_fields,
        [
            LitellmAccountField::EndUser,
            LitellmAccountField::ApiKeyHash
        ]
    );
    assert_eq!(litellm.model_field, LitellmModelField::Model);
    assert_eq!(
        config.sources.kong.unwrap().account_fields,
        [
            KongAccountField::ConsumerCustomId,
            KongAccountField::Header("x-account-id".to_string())
        ]
    );
    let envoy = config.sources.envoy.unwrap();
    assert_eq!(envoy.account_keys, ["x-tenant"]);
    assert_eq!(envoy.prompt_key.as_deref(), Some("x-prompt"));
    let otlp = config.sources.otlp.unwrap();
    assert_eq!(otlp.account_attributes, ["tenant.id", "enduser.id"]);
    assert_eq!(otlp.prompt_attribute.as_deref(), Some("app.prompt"));
}

#[test]
fn empty_sections_give_the_documented_defaults_and_typos_are_refused() {
    let config: Config =
        toml::from_str("[sources.litellm]\n[sources.kong]\n[sources.envoy]\n[sources.otlp]\n")
            .unwrap();
    assert_eq!(config.sources.litellm.unwrap(), LitellmDecoder::default());
    assert_eq!(
        config.sources.kong.unwrap().account_fields,
        [
            KongAccountField::ConsumerId,
            KongAccountField::AuthenticatedEntityId
        ]
    );
    assert_eq!(config.sources.envoy.unwrap().account_keys, ["x-user-id"]);
    assert_eq!(
        config.sources.otlp.unwrap().account_attributes,
        ["enduser.id", "user.id"]
    );
    assert!(toml::from_str::<Config>("[sources.envoy]\naccount_key = \"x\"\n").is_err());
    assert!(toml::from_str::<Config>("[sources.otlp]\naccount_attributes = []\n").is_err());
}
