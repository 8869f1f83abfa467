//! `echo`: a generating backbone without a model — it answers each conversation with the
//! text of its last user turn. Paired with a `template` prompt that renders a rationale
//! (`{"rationale": "A pick for fans of {{ item.genres }} …"}`), it runs the rationale stage
//! with fixed-template rationales instead of an SLM's, through the same cache and parsing:
//! PULSE's `template-rationales` ablation (is it the SLM's reasoning, or just the text?).

use pulse_api::backbone::GenProgressFn;
use pulse_api::{
    Backbone, Capability, ChatTurn, ConfigError, GenOutput, GenSettings, LoadContext,
    LoadedBackbone, PluginConfig, PluginError,
};
use serde::{Deserialize, Serialize};

/// Config of `echo` (no keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {}

impl PluginConfig for EchoConfig {
    const TYPE: &'static str = "echo";
    const SUMMARY: &'static str =
        "No model: answers with the prompt's last user turn (fixed-template rationales)";
    const EXAMPLE: &'static str = "\
# No keys. Pair it with a template prompt whose text is the answer, e.g.
# [prompts.genres]
# type = \"template\"
# text = '{\"rationale\": \"A pick for fans of {{ item.genres }}.\"}'
";

    fn validate(&self) -> Vec<ConfigError> {
        Vec::new()
    }
}

impl Backbone for EchoConfig {
    fn describe(&self) -> String {
        "echo (the rendered prompt is the answer)".into()
    }

    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::Generate]
    }

    fn id(&self, _ctx: &LoadContext) -> Result<String, PluginError> {
        Ok("echo:v1".into())
    }

    fn open(&self, _ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError> {
        Ok(Box::new(Echo))
    }
}

struct Echo;

impl LoadedBackbone for Echo {
    fn generate(
        &self,
        conversations: &[Vec<ChatTurn>],
        _settings: &GenSettings,
        progress: &mut GenProgressFn<'_>,
    ) -> Result<Vec<GenOutput>, PluginError> {
        let mut out = Vec::with_capacity(conversations.len());
        for (i, conv) in conversations.iter().enumerate() {
            let text = conv
                .iter()
                .rev()
                .find(|t| t.role == "user")
                .map(|t| t.content.trim().to_string())
                .ok_or_else(|| {
                    PluginError::Other("echo: a conversation without a user turn".into())
                })?;
            let words = text.split_whitespace().count();
            out.push(GenOutput {
                text,
                prompt_tokens: words,
                new_tokens: words,
                finish_reason: "stop".into(),
            });
            progress(i + 1, out.iter().map(|o| o.new_tokens).sum());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(conv: Vec<ChatTurn>, expected: Result<&str, &str>) {
        let ctx = LoadContext {
            cache_dir: Default::default(),
            base_dir: Default::default(),
            seed: 0,
        };
        let echo = EchoConfig {}.open(&ctx).unwrap();
        let got = echo.generate(&[conv], &GenSettings::default(), &mut |_, _| {});
        match (got, expected) {
            (Ok(o), Ok(text)) => assert_eq!(o[0].text, text),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{e}"),
            (got, want) => panic!("{got:?} vs {want:?}"),
        }
    }

    #[test]
    fn answers_with_the_last_user_turn() {
        let t = ChatTurn::new;
        check(
            vec![
                t("system", "be brief"),
                t("user", " {\"rationale\": \"x\"} "),
            ],
            Ok("{\"rationale\": \"x\"}"),
        );
        check(
            vec![
                t("user", "first"),
                t("assistant", "ok"),
                t("user", "second"),
            ],
            Ok("second"),
        );
        check(vec![t("system", "s")], Err("without a user turn"));
    }
}
