//! The encoder as trainable parameters: its weights live as candle `Var`s in a `VarMap`, so a
//! later stage (the thought space) can fine-tune it by backpropagating through
//! [`TrainableEncoder::forward`] and stepping an optimizer over
//! [`TrainableEncoder::trainable_vars`]. Lower parts can be frozen: they get no `Var`s in that
//! list and their outputs are detached, so backprop stops at the first trainable layer.

use super::encoder::{load_tensors, parse_parts, Encoder, EncoderOptions};
use super::files::{EncoderFiles, EncoderSource};
use super::model::{Bert, TokenBatch};
use super::BertError;
use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

/// Which parts of the encoder stay fixed during fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freeze {
    /// Everything trains.
    #[default]
    Nothing,
    /// The embedding tables (most of a small BERT's parameters: 11.7 M of MiniLM-L6's 22.7 M)
    /// stay fixed; every transformer layer trains.
    Embeddings,
    /// The embeddings and the lowest `k` transformer layers stay fixed.
    Layers(usize),
}

impl Freeze {
    /// Index of the first layer that trains.
    fn first_trainable(self) -> usize {
        match self {
            Freeze::Nothing | Freeze::Embeddings => 0,
            Freeze::Layers(k) => k,
        }
    }

    fn embeddings_train(self) -> bool {
        self == Freeze::Nothing
    }

    /// Whether the parameter called `name` is frozen.
    fn freezes(self, name: &str) -> bool {
        if name.starts_with("embeddings.") {
            return !self.embeddings_train();
        }
        let layer = name
            .strip_prefix("encoder.layer.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok());
        matches!(layer, Some(i) if i < self.first_trainable())
    }
}

/// An encoder whose weights are `Var`s.
pub struct TrainableEncoder {
    encoder: Encoder,
    varmap: VarMap,
    freeze: Freeze,
}

impl std::fmt::Debug for TrainableEncoder {
    // VarMap has no Debug; the variable count says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainableEncoder")
            .field("encoder", &self.encoder)
            .field("vars", &self.varmap.all_vars().len())
            .field("freeze", &self.freeze)
            .finish()
    }
}

impl TrainableEncoder {
    /// Loads the weights of `source` as trainable variables (F32: optimizers need it).
    pub fn load(
        source: &EncoderSource,
        device: &Device,
        opts: EncoderOptions,
        freeze: Freeze,
    ) -> Result<Self, BertError> {
        Self::from_files(&source.files()?, device, opts, freeze)
    }

    /// As [`TrainableEncoder::load`], from files already in memory.
    pub fn from_files(
        files: &EncoderFiles,
        device: &Device,
        mut opts: EncoderOptions,
        freeze: Freeze,
    ) -> Result<Self, BertError> {
        opts.dtype = candle_core::DType::F32;
        let parts = parse_parts(files, &opts)?;
        if let Freeze::Layers(k) = freeze {
            if k > parts.cfg.num_hidden_layers {
                return Err(BertError::Invalid(format!(
                    "cannot freeze {k} layers of a {}-layer encoder",
                    parts.cfg.num_hidden_layers
                )));
            }
        }
        let varmap = VarMap::new();
        let known;
        {
            let mut vars = varmap
                .data()
                .lock()
                .map_err(|_| BertError::Invalid("variable map lock poisoned".into()))?;
            for (name, t) in load_tensors(&files.weights, device)? {
                // The pooler and pre-training heads are not part of a sentence encoder, and
                // integer buffers (`embeddings.position_ids`) are not parameters.
                let part = name.starts_with("embeddings.") || name.starts_with("encoder.");
                if part && t.dtype().is_float() {
                    vars.insert(name, Var::from_tensor(&t.to_dtype(opts.dtype)?)?);
                }
            }
            known = vars.len();
        }
        let vb = VarBuilder::from_varmap(&varmap, opts.dtype, device);
        let bert = Bert::load(&parts.cfg, vb, false)?;
        // A VarMap invents (randomly initialised) variables for names it lacks; a checkpoint
        // missing a weight must fail instead of training from noise.
        let all = varmap.all_vars().len();
        if all != known {
            return Err(BertError::Invalid(format!(
                "{}: {} weight(s) the configuration needs are missing from model.safetensors",
                parts.origin,
                all - known
            )));
        }
        Ok(Self {
            encoder: Encoder::assemble(bert, parts, opts, device),
            varmap,
            freeze,
        })
    }

    /// All of the encoder's variables, by parameter name (`encoder.layer.0.…`); save and load
    /// fine-tuned weights with `VarMap::save` / `VarMap::load`.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// What stays fixed.
    pub fn freeze(&self) -> Freeze {
        self.freeze
    }

    /// The variables an optimizer should step: all but the frozen ones, sorted by name so the
    /// order is the same from run to run.
    pub fn trainable_vars(&self) -> Vec<Var> {
        let Ok(vars) = self.varmap.data().lock() else {
            return Vec::new();
        };
        let mut named: Vec<(&String, &Var)> = vars
            .iter()
            .filter(|(name, _)| !self.freeze.freezes(name))
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// A padded batch of `texts` in the given order.
    pub fn batch(&self, texts: &[&str]) -> Result<TokenBatch, BertError> {
        self.encoder.batch(texts)
    }

    /// Sentence vectors `(batch, dim)` with the autograd graph attached: call `backward()` on a
    /// loss built from them.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor, BertError> {
        let opts = self.encoder.options();
        Ok(self.encoder.bert.embed(
            batch,
            self.encoder.pooling(),
            opts.normalize,
            self.freeze.first_trainable(),
            self.freeze.embeddings_train(),
        )?)
    }

    /// Pools with `pooling` instead of the model's own, in [`TrainableEncoder::forward`] and
    /// in inference through [`TrainableEncoder::encoder`].
    pub fn set_pooling(&mut self, pooling: super::Pooling) {
        self.encoder.set_pooling(pooling);
    }

    /// The encoder with the current weights, for inference (no graph is kept).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

#[cfg(test)]
mod tests {
    use super::Freeze;

    #[track_caller]
    fn check(freeze: Freeze, name: &str, frozen: bool) {
        assert_eq!(freeze.freezes(name), frozen, "{freeze:?} {name}");
    }

    #[test]
    fn freeze_selects_lower_parts() {
        let emb = "embeddings.word_embeddings.weight";
        let l0 = "encoder.layer.0.attention.self.query.weight";
        let l1 = "encoder.layer.1.output.dense.bias";
        let l10 = "encoder.layer.10.output.dense.bias";
        check(Freeze::Nothing, emb, false);
        check(Freeze::Nothing, l0, false);
        check(Freeze::Embeddings, emb, true);
        check(Freeze::Embeddings, l0, false);
        check(Freeze::Layers(1), emb, true);
        check(Freeze::Layers(1), l0, true);
        check(Freeze::Layers(1), l1, false);
        // Layer 10 is not layer 1 followed by anything.
        check(Freeze::Layers(2), l10, false);
        check(Freeze::Layers(0), emb, true);
    }
}
