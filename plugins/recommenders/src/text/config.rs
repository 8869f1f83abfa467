//! Configs of `text-seq`, `slm-emb` and `pulse`: one set of keys ([`TextRecFields`]), three
//! types with their own defaults, docs and checks, all resolved into [`Settings`] for the
//! shared network. Keys whose default differs by type are optional in the fields and filled
//! in by [`Settings`]; `why_*` keys exist only for `pulse` (the text baselines have no
//! rationales, and saying so beats silently ignoring them).

use crate::common;
use crate::transformer;
use pulse_api::config::check_range;
use pulse_api::{
    ConfigError, Family, LossSpec, PluginConfig, Reference, TrainConfig, THOUGHT_SPACE,
};
use serde::{Deserialize, Serialize};

/// Every key of the three types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextRecFields {
    /// Source of the item vectors: `thought-space` or a `[backbones.NAME]` with `embed`.
    pub item_vectors: Option<String>,
    /// Item tower reads the item vectors (through a trained linear projection).
    pub text: bool,
    /// Item tower adds a learned ID embedding per item.
    pub id_embeddings: Option<bool>,
    /// Subtract the mean item vector (and rescale to unit mean norm) before the projection.
    pub center: bool,
    /// λ: weight of the *why* loss (`pulse` only).
    pub why_weight: Option<f64>,
    /// Source of the rationale vectors (`pulse` only).
    pub rationale_vectors: Option<String>,
    /// The *why* objective over in-batch (user state, rationale) pairs (`pulse` only).
    pub why_loss: Option<LossSpec>,
    pub hidden_size: usize,
    pub inner_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub dropout: f64,
    pub max_len: usize,
    /// The *what* objective: next item over full logits (`ce`) or sampled negatives.
    pub loss: LossSpec,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub patience: usize,
    pub eval_every: usize,
}

impl Default for TextRecFields {
    fn default() -> Self {
        Self {
            item_vectors: None,
            text: true,
            id_embeddings: None,
            center: true,
            why_weight: None,
            rationale_vectors: None,
            why_loss: None,
            hidden_size: 64,
            inner_size: 256,
            layers: 2,
            heads: 2,
            dropout: 0.5,
            max_len: 50,
            loss: LossSpec::of("ce"),
            epochs: 200,
            batch_size: 128,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 10,
            eval_every: 1,
        }
    }
}

/// The resolved settings the network is built from.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub type_name: &'static str,
    pub item_vectors: String,
    pub text: bool,
    pub id_embeddings: bool,
    pub why_weight: f64,
    pub rationale_vectors: String,
    pub why_loss: LossSpec,
    pub fields: TextRecFields,
}

impl Settings {
    pub fn train_config(&self) -> TrainConfig {
        let f = &self.fields;
        TrainConfig {
            epochs: f.epochs,
            batch_size: f.batch_size,
            learning_rate: f.learning_rate,
            weight_decay: f.weight_decay,
            patience: f.patience,
            eval_every: f.eval_every,
        }
    }

    /// Whether the model asks for rationale vectors.
    pub fn uses_why(&self) -> bool {
        self.why_weight > 0.0
    }
}

fn why_default() -> LossSpec {
    LossSpec(serde_json::json!({ "type": "infonce", "temperature": 0.1 }))
}

/// Defaults of one type.
struct Defaults {
    type_name: &'static str,
    item_vectors: &'static str,
    id_embeddings: bool,
    /// `Some(λ)` for `pulse`; `None` where the `why_*` keys do not exist.
    why_weight: Option<f64>,
}

fn resolve(f: &TextRecFields, d: &Defaults) -> Settings {
    Settings {
        type_name: d.type_name,
        item_vectors: f
            .item_vectors
            .clone()
            .unwrap_or_else(|| d.item_vectors.to_string()),
        text: f.text,
        id_embeddings: f.id_embeddings.unwrap_or(d.id_embeddings),
        why_weight: f.why_weight.or(d.why_weight).unwrap_or(0.0),
        rationale_vectors: f
            .rationale_vectors
            .clone()
            .unwrap_or_else(|| THOUGHT_SPACE.to_string()),
        why_loss: f.why_loss.clone().unwrap_or_else(why_default),
        fields: f.clone(),
    }
}

fn validate(f: &TextRecFields, d: &Defaults) -> Vec<ConfigError> {
    let mut e = Vec::new();
    let s = resolve(f, d);
    transformer::check_dims(&mut e, f.hidden_size, f.inner_size, f.layers, f.heads);
    common::check_dropout(&mut e, f.dropout);
    check_range(&mut e, "max_len", f.max_len, 1, 1024);
    s.train_config().validate(&mut e);
    if d.why_weight.is_none() {
        for (key, set) in [
            ("why_weight", f.why_weight.is_some()),
            ("rationale_vectors", f.rationale_vectors.is_some()),
            ("why_loss", f.why_loss.is_some()),
        ] {
            if set {
                e.push(ConfigError::message(
                    key,
                    format!(
                        "{} learns from items only; rationales are the `pulse` model's \
                         (use type = \"pulse\")",
                        d.type_name
                    ),
                ));
            }
        }
    }
    if !(s.why_weight >= 0.0 && s.why_weight.is_finite()) {
        e.push(ConfigError::out_of_range(
            "why_weight",
            ">= 0",
            s.why_weight,
        ));
    }
    if !s.text && !s.id_embeddings {
        e.push(ConfigError::message(
            "text",
            "the item tower needs text = true or id_embeddings = true",
        ));
    }
    if s.text && s.item_vectors.is_empty() {
        e.push(ConfigError::message(
            "item_vectors",
            "missing: name an embed-capable [backbones.NAME] section, or \"thought-space\"",
        ));
    }
    e
}

fn references(f: &TextRecFields, d: &Defaults) -> Vec<Reference> {
    let s = resolve(f, d);
    let mut out = Vec::new();
    if s.text && !s.item_vectors.is_empty() && s.item_vectors != THOUGHT_SPACE {
        out.push(Reference {
            key: "item_vectors".into(),
            family: Family::Backbone,
            name: s.item_vectors.clone(),
        });
    }
    if s.uses_why() && s.rationale_vectors != THOUGHT_SPACE {
        out.push(Reference {
            key: "rationale_vectors".into(),
            family: Family::Backbone,
            name: s.rationale_vectors,
        });
    }
    out
}

macro_rules! text_type {
    ($name:ident, $type_name:literal, $summary:literal, $defaults:expr, $example:expr) => {
        #[doc = $summary]
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub TextRecFields);

        impl $name {
            const DEFAULTS: Defaults = $defaults;

            pub(crate) fn settings(&self) -> Settings {
                resolve(&self.0, &Self::DEFAULTS)
            }
        }

        impl PluginConfig for $name {
            const TYPE: &'static str = $type_name;
            const SUMMARY: &'static str = $summary;
            const EXAMPLE: &'static str = $example;

            fn validate(&self) -> Vec<ConfigError> {
                validate(&self.0, &Self::DEFAULTS)
            }

            fn references(&self) -> Vec<Reference> {
                references(&self.0, &Self::DEFAULTS)
            }
        }
    };
}

text_type!(
    TextSeqConfig,
    "text-seq",
    "Text-based sequential recommender (MoRec/UniSRec-style): item text vectors from a frozen encoder into a SASRec user tower",
    Defaults {
        type_name: "text-seq",
        item_vectors: "",
        id_embeddings: false,
        why_weight: None,
    },
    const_format_example::TEXT_SEQ
);

text_type!(
    SlmEmbConfig,
    "slm-emb",
    "Sequential recommender over item vectors from a small language model's mean hidden state",
    Defaults {
        type_name: "slm-emb",
        item_vectors: "",
        id_embeddings: false,
        why_weight: None,
    },
    const_format_example::SLM_EMB
);

text_type!(
    PulseConfig,
    "pulse",
    "PULSE: joint what/why recommender — next-item loss plus InfoNCE to rationale vectors in the thought space",
    Defaults {
        type_name: "pulse",
        item_vectors: THOUGHT_SPACE,
        id_embeddings: true,
        why_weight: Some(0.1),
    },
    const_format_example::PULSE
);

/// The EXAMPLE texts: a type-specific head followed by the shared tower keys.
mod const_format_example {
    macro_rules! with_tower {
        ($head:literal) => {
            concat!(
                $head,
                r#"# Item tower reads the item vectors (through a trained linear projection).
text = true
# Subtract the mean item vector (rescaled to unit mean norm) before projecting.
center = true
# Size of the hidden states (and the projected item vectors).
hidden_size = 64
# Width of the feed-forward layer inside each block.
inner_size = 256
# Number of causal transformer blocks of the user tower.
layers = 2
# Attention heads per block; must divide hidden_size.
heads = 2
# Dropout for hidden states and attention weights, in [0, 1).
dropout = 0.5
# Longest history the model reads.
max_len = 50
# The next-item ("what") objective.
loss = { type = "ce" }
epochs = 200
# Sequence windows (each up to max_len targets) per optimiser step.
batch_size = 128
learning_rate = 0.001
weight_decay = 0.0
# Validation rounds without improvement before stopping early (0 = never).
patience = 10
eval_every = 1
"#
            )
        };
    }

    pub const TEXT_SEQ: &str = with_tower!(
        r#"# Encoder of the item text: an embed-capable [backbones.NAME] (frozen), e.g. MiniLM.
item_vectors = "minilm"
# Also learn an ID embedding per item (MoRec's "text only" is false).
id_embeddings = false
"#
    );

    pub const SLM_EMB: &str = with_tower!(
        r#"# A [backbones.NAME] of type "gguf": item vectors are its mean final hidden state.
item_vectors = "slm"
id_embeddings = false
"#
    );

    pub const PULSE: &str = with_tower!(
        r#"# Item vectors: "thought-space" (the trained behaviour encoder) or a [backbones.NAME].
item_vectors = "thought-space"
# Add a learned ID embedding per item to the text vector.
id_embeddings = true
# λ: weight of the "why" loss (0 = no rationales: the no-why ablation).
why_weight = 0.1
# Rationale vectors: "thought-space" (the trained rationale encoder) or a [backbones.NAME].
rationale_vectors = "thought-space"
# The "why" objective between the user state at an explained step and its rationale.
why_loss = { type = "infonce", temperature = 0.1 }
"#
    );
}
