//! `[[llm.providers]]`: the OpenAI-compatible endpoints the hub calls itself (docs/llm.md).
//! Each entry is checked here, and errors name the entry's key (`llm.providers[0].base_url`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use hive_server::llm::{Price, Provider};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    #[serde(default)]
    providers: Vec<RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    base_url: String,
    /// The environment variable holding the API key (never the key itself: config files end up
    /// in repositories).
    api_key_env: Option<String>,
    models: Vec<String>,
    max_concurrent: Option<u32>,
    stream: Option<bool>,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    prompt_per_1k: f64,
    completion_per_1k: f64,
}

const DEFAULT_MAX_CONCURRENT: u32 = 4;

/// The providers, checked; `env` reads an environment variable (the process's, or a test's).
pub fn providers(
    section: LlmSection,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Provider>> {
    let mut names = BTreeSet::new();
    let mut providers = Vec::new();
    for (i, raw) in section.providers.into_iter().enumerate() {
        let key = format!("llm.providers[{i}]");
        let name_ok = (1..=64).contains(&raw.name.len())
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            bail!(
                "{key}.name must be 1-64 of A-Z a-z 0-9 _ . - (got {:?})",
                raw.name
            );
        }
        if !names.insert(raw.name.clone()) {
            bail!("{key}.name: another provider is named {:?}", raw.name);
        }
        if !(raw.base_url.starts_with("http://") || raw.base_url.starts_with("https://")) {
            bail!(
                "{key}.base_url must start with http:// or https:// (got {:?})",
                raw.base_url
            );
        }
        if raw.models.is_empty() {
            bail!("{key}.models must name at least one model");
        }
        let unique: BTreeSet<_> = raw.models.iter().collect();
        if unique.len() != raw.models.len() {
            bail!("{key}.models names a model twice");
        }
        let max_concurrent = raw.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
        if !(1..=1024).contains(&max_concurrent) {
            bail!("{key}.max_concurrent must be 1-1024 (got {max_concurrent})");
        }
        let api_key = match raw.api_key_env {
            Some(variable) => Some(env(&variable).ok_or_else(|| {
                anyhow::anyhow!("{key}.api_key_env: the environment variable {variable} is not set")
            })?),
            None => None,
        };
        let mut prices = BTreeMap::new();
        for (model, price) in raw.prices {
            if !raw.models.contains(&model) {
                bail!("{key}.prices.{model}: {model:?} is not among the provider's models");
            }
            for (what, value) in [
                ("prompt_per_1k", price.prompt_per_1k),
                ("completion_per_1k", price.completion_per_1k),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    bail!("{key}.prices.{model}.{what} must be a number of at least 0");
                }
            }
            prices.insert(
                model,
                Price {
                    prompt_per_1k: price.prompt_per_1k,
                    completion_per_1k: price.completion_per_1k,
                },
            );
        }
        let provider = Provider {
            name: raw.name,
            base_url: raw.base_url,
            api_key,
            models: raw.models,
            max_concurrent,
            stream: raw.stream.unwrap_or(false),
            prices,
        };
        if let Err(e) = provider.spec() {
            bail!("{key}.models: {e}");
        }
        providers.push(provider);
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Vec<Provider>> {
        #[derive(Deserialize)]
        struct File {
            llm: LlmSection,
        }
        let file: File = toml::from_str(text)?;
        providers(file.llm, |name| {
            (name == "KEY").then(|| "secret".to_string())
        })
    }

    #[test]
    fn a_provider_is_read_with_its_defaults_and_prices() {
        let providers = parse(
            r#"
            [[llm.providers]]
            name = "local"
            base_url = "http://127.0.0.1:8000/v1"
            api_key_env = "KEY"
            models = ["small", "meta/llama-3:8b"]
            [llm.providers.prices.small]
            prompt_per_1k = 0.5
            completion_per_1k = 1.5
            "#,
        )
        .unwrap();
        let p = &providers[0];
        assert_eq!(p.api_key.as_deref(), Some("secret"));
        assert_eq!(p.max_concurrent, 4);
        assert!(!p.stream);
        assert_eq!(p.prices["small"].completion_per_1k, 1.5);
        let spec = p.spec().unwrap();
        assert_eq!(spec.name, "llm:local");
        assert_eq!(spec.capabilities[1].0.as_str(), "llm:local/meta/llama-3:8b");
    }

    #[test]
    fn errors_name_the_key() {
        let provider = |extra: &str| {
            format!(
                "[[llm.providers]]\nname = \"p\"\nbase_url = \"http://x/v1\"\nmodels = [\"m\"]\n{extra}"
            )
        };
        let err = |text: String| parse(&text).unwrap_err().to_string();
        assert!(err(provider("api_key_env = \"NOPE\"")).contains("llm.providers[0].api_key_env"));
        assert!(err(provider("max_concurrent = 0")).contains("llm.providers[0].max_concurrent"));
        assert!(
            err(provider(
                "[llm.providers.prices.other]\nprompt_per_1k = 1.0\ncompletion_per_1k = 1.0"
            ))
            .contains("llm.providers[0].prices.other")
        );
        assert!(
            err(provider("").replace("http://x/v1", "ftp://x"))
                .contains("llm.providers[0].base_url")
        );
        assert!(
            err(provider("").replace("[\"m\"]", "[\"has space\"]"))
                .contains("llm.providers[0].models")
        );
        assert!(
            err(format!("{}\n{}", provider(""), provider(""))).contains("llm.providers[1].name")
        );
    }
}
