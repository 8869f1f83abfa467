//! The backbones as pulse plugins (family `backbone`): `gguf` (generate + embed: the mean
//! final hidden state, L2-normalised), `bert` (embed) and `openai` (generate + embed). Each
//! config only names the model; weights load in [`Backbone::open`], so validating a spec never
//! reads them, and [`Backbone::id`] names the exact weights (catalog checksum, or path + size +
//! mtime, or server + model) for cache keys.

use crate::bert::{Encoder, EncoderSource};
use crate::chat::Message;
use crate::gguf::{GgufBackbone, LoadOptions, WeightFormat};
use crate::openai::{BlockingClient, ChatMessage, OpenAiConfig};
use crate::{DeviceSpec, GenParams};
use pulse_api::backbone::GenProgressFn;
use pulse_api::config::{ConfigError, PluginConfig};
use pulse_api::serde::{Deserialize, Serialize};
use pulse_api::{
    Backbone, Capability, ChatTurn, GenOutput, GenSettings, LoadContext, LoadedBackbone,
    PluginError, Registrar,
};
use std::path::{Path, PathBuf};

/// Registers `gguf`, `bert` and `openai`.
pub fn register(r: &mut Registrar) {
    r.backbone::<GgufConfig>(|c| Ok(Box::new(c)));
    r.backbone::<BertConfigSection>(|c| Ok(Box::new(c)));
    r.backbone::<OpenAiSection>(|c| Ok(Box::new(c)));
    r.backbone::<crate::echo::EchoConfig>(|c| Ok(Box::new(c)));
}

fn err(e: impl std::fmt::Display) -> PluginError {
    PluginError::Other(e.to_string())
}

fn check_device(device: &str, errors: &mut Vec<ConfigError>) {
    if let Err(e) = device.parse::<DeviceSpec>() {
        errors.push(ConfigError::invalid_value(
            "device",
            "\"cpu\" or \"cuda:N\"",
            format!("'{device}' ({e})"),
        ));
    }
}

/// Where a model comes from: `path` when given (it overrides `model`), else the named asset
/// `model`.
/// `hf:OWNER/REPO/FILE[@REVISION]` is accepted where `hf` is true (single-file models).
fn check_source(model: &str, path: &Option<PathBuf>, hf: bool, errors: &mut Vec<ConfigError>) {
    match (model.is_empty(), path) {
        (_, Some(_)) => {}
        (false, None) if model.starts_with("hf:") => match pulse_assets::HfSource::parse(model) {
            Some(Ok(_)) if hf => {}
            Some(Ok(_)) => errors.push(ConfigError::message(
                "model",
                "hf: sources name one file; this backbone needs a model directory: download                  it and give path = \"DIR\"",
            )),
            Some(Err(e)) => errors.push(ConfigError::message("model", e)),
            None => {}
        },
        (true, None) => errors.push(ConfigError::message(
            "model",
            "missing: give model = \"NAMED-ASSET\" (see `pulse assets list`) or path = \"FILE\"",
        )),
        (false, None) => {
            if pulse_assets::named_asset(model).is_err() {
                let known: Vec<&str> = pulse_assets::named_assets()
                    .iter()
                    .map(|a| a.name)
                    .collect();
                errors.push(ConfigError::invalid_value(
                    "model",
                    format!("a named asset ({})", known.join(", ")),
                    format!("'{model}'"),
                ));
            }
        }
    }
}

fn resolve(path: &Path, ctx: &LoadContext) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.base_dir.join(path)
    }
}

/// `asset:NAME@sha256` or `file:PATH@SIZE:MTIME`.
fn source_id(
    model: &str,
    path: &Option<PathBuf>,
    ctx: &LoadContext,
) -> Result<String, PluginError> {
    if let (None, Some(Ok(src))) = (path, pulse_assets::HfSource::parse(model)) {
        return Ok(src.id());
    }
    if let Some(p) = path {
        let p = resolve(p, ctx);
        let meta =
            std::fs::metadata(&p).map_err(|e| PluginError::io(p.display().to_string(), e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        return Ok(format!("file:{}@{}:{mtime}", p.display(), meta.len()));
    }
    let asset = pulse_assets::named_asset(model).map_err(err)?;
    let shas: Vec<&str> = asset.files.iter().map(|f| f.sha256).collect();
    Ok(format!("asset:{model}@{}", shas.join("+")))
}

/// `[backbones.NAME]` with `type = "gguf"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct GgufConfig {
    /// Named GGUF asset (`smollm2-135m-instruct`, `gemma3-270m`, `qwen2.5-coder-0.5b-instruct`).
    pub model: String,
    /// A local GGUF file instead (relative to the spec).
    pub path: Option<PathBuf>,
    pub device: String,
    /// `auto`, `quantized`, `f32`, `f16` or `int8`.
    pub weights: WeightFormat,
    /// CPU threads (the global pool; first setting wins). Default: all cores.
    pub threads: Option<usize>,
}

impl Default for GgufConfig {
    fn default() -> Self {
        Self {
            model: "smollm2-135m-instruct".into(),
            path: None,
            device: "cpu".into(),
            weights: WeightFormat::Auto,
            threads: None,
        }
    }
}

impl GgufConfig {
    const HF: bool = true;
}

impl PluginConfig for GgufConfig {
    const TYPE: &'static str = "gguf";
    const SUMMARY: &'static str =
        "Small language model from a GGUF file (llama/SmolLM2, qwen2, gemma3) run with candle; capabilities: generate, embed (mean final hidden state, L2-normalised)";
    const EXAMPLE: &'static str = r#"# Named asset (see `pulse assets list`); path = "model.gguf" (relative to the spec) overrides it.
# With network and a build with `--features hf`: model = "hf:OWNER/REPO/FILE.gguf[@REVISION]".
model = "smollm2-135m-instruct"
# path = "models/my.gguf"
device = "cpu"          # or "cuda:0"
weights = "auto"        # auto | quantized | f32 | f16 | int8
# threads = 2
# embed: plain text (no chat template), first 512 tokens, mean of the final hidden states
# (after the output norm), L2-normalised; always on, so `id` (the weights) names the vectors too.
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        check_source(&self.model, &self.path, Self::HF, &mut e);
        check_device(&self.device, &mut e);
        if self.threads == Some(0) {
            e.push(ConfigError::out_of_range("threads", ">= 1", 0));
        }
        e
    }
}

impl Backbone for GgufConfig {
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("gguf {} on {}", p.display(), self.device),
            None => format!("gguf {} on {}", self.model, self.device),
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::Generate, Capability::Embed]
    }

    fn id(&self, ctx: &LoadContext) -> Result<String, PluginError> {
        source_id(&self.model, &self.path, ctx)
    }

    fn open(&self, ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError> {
        if let Some(n) = self.threads {
            // An already built global pool keeps its size; that is the documented rule.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        let opts = LoadOptions {
            device: self.device.parse().map_err(err)?,
            weights: self.weights,
        };
        let model = match (&self.path, pulse_assets::HfSource::parse(&self.model)) {
            (Some(p), _) => GgufBackbone::load(&resolve(p, ctx), &opts),
            (None, Some(src)) => {
                let src = src.map_err(PluginError::Other)?;
                let file = pulse_assets::fetch_hf(&ctx.cache_dir, &src).map_err(err)?;
                GgufBackbone::load(&file, &opts)
            }
            (None, None) => GgufBackbone::load_named(&self.model, &ctx.cache_dir, &opts),
        }
        .map_err(err)?;
        Ok(Box::new(LoadedGguf(model)))
    }
}

struct LoadedGguf(GgufBackbone);

pub(crate) fn gen_params(s: &GenSettings) -> GenParams {
    GenParams {
        max_new_tokens: s.max_new_tokens,
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        repetition_penalty: s.repetition_penalty,
        seed: s.seed,
        stop: s.stop.clone(),
        batch_size: s.batch_size,
    }
}

fn output(g: crate::Generation) -> GenOutput {
    GenOutput {
        text: g.text,
        prompt_tokens: g.prompt_tokens,
        new_tokens: g.new_tokens,
        finish_reason: g.finish_reason.as_str().to_string(),
    }
}

impl LoadedBackbone for LoadedGguf {
    fn generate(
        &self,
        conversations: &[Vec<ChatTurn>],
        settings: &GenSettings,
        progress: &mut GenProgressFn<'_>,
    ) -> Result<Vec<GenOutput>, PluginError> {
        // A final assistant turn is a prefill: the answer continues from its text.
        let prompts = conversations
            .iter()
            .map(|c| {
                let (turns, prefill) = match c.split_last() {
                    Some((last, rest)) if last.role == "assistant" => (rest, last.content.as_str()),
                    _ => (c.as_slice(), ""),
                };
                let msgs: Vec<Message> = turns
                    .iter()
                    .map(|t| Message::new(t.role.clone(), t.content.clone()))
                    .collect();
                self.0.apply_chat_template(&msgs, true).map(|p| p + prefill)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let params = gen_params(settings);
        params.validate().map_err(PluginError::Other)?;
        let mut out: Vec<Option<GenOutput>> = vec![None; prompts.len()];
        self.0
            .generate_with(
                &prompts,
                &params,
                &mut |i, g| out[i] = Some(output(g)),
                &mut |p| progress(p.finished, p.new_tokens),
            )
            .map_err(err)?;
        // invariant: the engine reports every prompt exactly once before returning Ok.
        Ok(out.into_iter().flatten().collect())
    }

    /// Fixed settings (512 tokens, normalised): the embedding stage keys its cache on
    /// [`Backbone::id`] alone, so a setting that changed the vectors would need to be in it.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        self.0.embed(texts).map_err(err)
    }
}

/// `[backbones.NAME]` with `type = "bert"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct BertConfigSection {
    /// Named encoder asset (`all-minilm-l6-v2`).
    pub model: String,
    /// A local sentence-transformers directory instead (relative to the spec).
    pub path: Option<PathBuf>,
    pub device: String,
}

impl Default for BertConfigSection {
    fn default() -> Self {
        Self {
            model: crate::bert::MINILM.into(),
            path: None,
            device: "cpu".into(),
        }
    }
}

impl BertConfigSection {
    const HF: bool = false;

    /// Where the weights come from, as [`Backbone::open`] reads them: for callers that
    /// fine-tune the encoder ([`crate::bert::TrainableEncoder`]) rather than only embed.
    pub fn source(&self, ctx: &LoadContext) -> EncoderSource {
        match &self.path {
            Some(p) => EncoderSource::Dir(resolve(p, ctx)),
            None => EncoderSource::Asset {
                name: self.model.clone(),
                cache_dir: Some(ctx.cache_dir.clone()),
            },
        }
    }
}

impl PluginConfig for BertConfigSection {
    const TYPE: &'static str = "bert";
    const SUMMARY: &'static str =
        "Sentence encoder (all-MiniLM-L6-v2 or a local BERT directory), mean pooled, L2-normalised; capability: embed";
    const EXAMPLE: &'static str = r#"model = "all-minilm-l6-v2"
# path = "models/my-encoder"
device = "cpu"
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        check_source(&self.model, &self.path, Self::HF, &mut e);
        check_device(&self.device, &mut e);
        e
    }
}

impl Backbone for BertConfigSection {
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("bert {} on {}", p.display(), self.device),
            None => format!("bert {} on {}", self.model, self.device),
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::Embed]
    }

    fn id(&self, ctx: &LoadContext) -> Result<String, PluginError> {
        source_id(&self.model, &self.path, ctx)
    }

    fn open(&self, ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError> {
        let device = self
            .device
            .parse::<DeviceSpec>()
            .and_then(DeviceSpec::open)
            .map_err(err)?;
        Ok(Box::new(LoadedBert(
            Encoder::load(&self.source(ctx), &device).map_err(err)?,
        )))
    }
}

struct LoadedBert(Encoder);

impl LoadedBackbone for LoadedBert {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        self.0.encode(texts).map_err(err)
    }
}

/// `[backbones.NAME]` with `type = "openai"`: the client's own config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", transparent)]
pub struct OpenAiSection(pub OpenAiConfig);

impl PluginConfig for OpenAiSection {
    const TYPE: &'static str = "openai";
    const SUMMARY: &'static str =
        "Any OpenAI-compatible server (vLLM, llama.cpp, Ollama); capabilities: generate, embed";
    const EXAMPLE: &'static str = r#"base_url = "http://127.0.0.1:8000/v1"
model = "smollm2"               # the served model's name (required; no default)
# embedding_model = "…"         # default: model
# api_key_env = "OPENAI_API_KEY"
max_concurrency = 4
timeout_secs = 300.0
connect_timeout_secs = 10.0
max_retries = 4
backoff_base_ms = 500
backoff_max_ms = 30000
repetition_penalty_key = "repetition_penalty"
"#;

    fn validate(&self) -> Vec<ConfigError> {
        self.0
            .problems()
            .into_iter()
            .map(|p| {
                let key = p.split_whitespace().next().unwrap_or("").to_string();
                ConfigError::message(&key, p)
            })
            .collect()
    }
}

impl Backbone for OpenAiSection {
    fn describe(&self) -> String {
        format!("openai {} at {}", self.0.model, self.0.base_url)
    }

    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::Generate, Capability::Embed]
    }

    fn id(&self, _ctx: &LoadContext) -> Result<String, PluginError> {
        Ok(format!("openai:{}#{}", self.0.base_url, self.0.model))
    }

    fn open(&self, _ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError> {
        Ok(Box::new(LoadedOpenAi(
            BlockingClient::new(self.0.clone()).map_err(err)?,
        )))
    }
}

struct LoadedOpenAi(BlockingClient);

impl LoadedBackbone for LoadedOpenAi {
    fn generate(
        &self,
        conversations: &[Vec<ChatTurn>],
        settings: &GenSettings,
        progress: &mut GenProgressFn<'_>,
    ) -> Result<Vec<GenOutput>, PluginError> {
        // Chat servers differ in how they treat a final assistant turn, so a prefill is not
        // sent; an answer that repeats it has it removed, as the caller prepends it.
        let prefills: Vec<&str> = conversations
            .iter()
            .map(|c| match c.last() {
                Some(t) if t.role == "assistant" => t.content.as_str(),
                _ => "",
            })
            .collect();
        let convs: Vec<Vec<ChatMessage>> = conversations
            .iter()
            .zip(&prefills)
            .map(|(c, p)| {
                let n = c.len() - usize::from(!p.is_empty());
                c[..n]
                    .iter()
                    .map(|t| ChatMessage {
                        role: t.role.clone(),
                        content: t.content.clone(),
                    })
                    .collect()
            })
            .collect();
        let out = self
            .0
            .generate_chat(&convs, &gen_params(settings))
            .into_iter()
            .zip(&prefills)
            .map(|(r, p)| {
                r.map(output).map_err(err).map(|mut o| {
                    if let Some(rest) = o.text.trim_start().strip_prefix(p) {
                        o.text = rest.to_string();
                    }
                    o
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        progress(out.len(), out.iter().map(|o| o.new_tokens).sum());
        Ok(out)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        self.0.embed(texts).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::plugin::decode_section;

    #[track_caller]
    fn check<C: PluginConfig>(section: serde_json::Value, expected: Result<(), &str>) {
        match (decode_section::<C>(&section), expected) {
            (Ok(_), Ok(())) => {}
            (Err(errs), Err(want)) => {
                let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                assert!(all.iter().any(|e| e.contains(want)), "{all:?} lacks {want}");
            }
            (Ok(_), Err(want)) => panic!("accepted; wanted error {want}"),
            (Err(e), Ok(())) => panic!("rejected: {e:?}"),
        }
    }

    #[test]
    fn examples_decode_to_defaults_and_configs_are_checked() {
        #[track_caller]
        fn example_is_default<C: PluginConfig>() {
            let v: toml::Value = toml::from_str(C::EXAMPLE).unwrap();
            let got: C = pulse_api::decode(&serde_json::to_value(v).unwrap()).unwrap();
            assert_eq!(
                serde_json::to_value(got).unwrap(),
                serde_json::to_value(C::default()).unwrap()
            );
        }
        example_is_default::<GgufConfig>();
        example_is_default::<BertConfigSection>();
        check::<GgufConfig>(serde_json::json!({}), Ok(()));
        check::<GgufConfig>(serde_json::json!({"model": "nope"}), Err("a named asset"));
        check::<GgufConfig>(serde_json::json!({"device": "gpu"}), Err("cuda:N"));
        check::<GgufConfig>(
            serde_json::json!({"treads": 2}),
            Err("did you mean 'threads'"),
        );
        check::<GgufConfig>(serde_json::json!({"model": "", "path": "x.gguf"}), Ok(()));
        check::<GgufConfig>(serde_json::json!({"model": ""}), Err("missing: give model"));
        check::<GgufConfig>(serde_json::json!({"model": "hf:o/r/m.gguf@v1"}), Ok(()));
        check::<GgufConfig>(
            serde_json::json!({"model": "hf:o/r"}),
            Err("hf:OWNER/REPO/FILE"),
        );
        check::<BertConfigSection>(
            serde_json::json!({"model": "hf:o/r/model.safetensors"}),
            Err("needs a model directory"),
        );
        check::<BertConfigSection>(serde_json::json!({"device": "cuda:0"}), Ok(()));
        check::<OpenAiSection>(serde_json::json!({"model": "m"}), Ok(()));
        check::<OpenAiSection>(serde_json::json!({}), Err("model must name"));
    }

    #[test]
    fn ids_name_the_exact_weights() {
        let ctx = LoadContext {
            cache_dir: PathBuf::from("/nonexistent"),
            base_dir: PathBuf::from("."),
            seed: 0,
        };
        let id = GgufConfig::default().id(&ctx).unwrap();
        assert!(id.starts_with("asset:smollm2-135m-instruct@"), "{id}");
        assert_eq!(id.len(), "asset:smollm2-135m-instruct@".len() + 64);
        let missing = GgufConfig {
            model: String::new(),
            path: Some("no/such.gguf".into()),
            ..GgufConfig::default()
        };
        assert!(missing.id(&ctx).is_err());
        let hf = GgufConfig {
            model: "hf:o/r/m.gguf".into(),
            ..GgufConfig::default()
        };
        assert_eq!(hf.id(&ctx).unwrap(), "hf:o/r/m.gguf@main");
    }

    #[test]
    fn gguf_embeds_through_the_plugin() {
        let cfg = GgufConfig::default();
        assert_eq!(
            cfg.capabilities(),
            [Capability::Generate, Capability::Embed]
        );
        let ctx = LoadContext {
            cache_dir: pulse_assets::cache_dir(),
            base_dir: PathBuf::from("."),
            seed: 0,
        };
        let texts = ["Toy Story (1995)", "Heat (1995). Action|Crime|Thriller"];
        let got = cfg.open(&ctx).unwrap().embed(&texts).unwrap();
        // The same vectors as the model's own `embed` (the plugin adds no settings of its own).
        let direct = GgufBackbone::load_named(&cfg.model, &ctx.cache_dir, &LoadOptions::default())
            .unwrap()
            .embed(&texts)
            .unwrap();
        assert_eq!(got, direct);
        assert_eq!(got[0].len(), 576);
    }
}
