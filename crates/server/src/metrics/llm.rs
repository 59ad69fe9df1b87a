//! What the LLM providers were asked and answered: requests, tokens and their cost, per
//! capability (`llm:<provider>/<model>`), recorded by the executor after each provider answer.
//! Read by `/metrics` and each snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hive_proto::metrics::LlmUsage;

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

#[derive(Debug, Default)]
pub struct LlmMeter {
    by_capability: Mutex<BTreeMap<String, LlmUsage>>,
}

impl LlmMeter {
    fn with(
        &self,
        capability: &str,
        provider: &str,
        model: &str,
        change: impl FnOnce(&mut LlmUsage),
    ) {
        let mut all = self.by_capability.lock().unwrap_or_else(|p| p.into_inner());
        let usage = all
            .entry(capability.to_owned())
            .or_insert_with(|| LlmUsage {
                provider: provider.to_owned(),
                model: model.to_owned(),
                ..LlmUsage::default()
            });
        change(usage);
    }

    /// A completion, its tokens, and their cost when the model has prices.
    pub fn answered(
        &self,
        capability: &str,
        provider: &str,
        model: &str,
        tokens: Tokens,
        cost: Option<f64>,
    ) {
        self.with(capability, provider, model, |u| {
            u.requests += 1;
            u.prompt_tokens += tokens.prompt;
            u.completion_tokens += tokens.completion;
            if let Some(cost) = cost {
                *u.cost.get_or_insert(0.0) += cost;
            }
        });
    }

    /// A request that got no completion.
    pub fn failed(&self, capability: &str, provider: &str, model: &str) {
        self.with(capability, provider, model, |u| u.failed_requests += 1);
    }

    pub fn read(&self) -> BTreeMap<String, LlmUsage> {
        self.by_capability
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
