//! The two towers of the thought space: a behaviour and a rationale encoder (one shared
//! encoder, or two copies of the same checkpoint), each with an optional linear projection
//! head, and L2 normalisation last, so a dot product is a cosine. Encoder weights are candle
//! `Var`s ([`TrainableEncoder`]) with the lower parts frozen as the section asks; the heads are
//! `Var`s of their own map. The best epoch's trainable weights are kept as an in-memory
//! snapshot and written to the stage directory as safetensors at the end.

use crate::cache::io;
use crate::StageError;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use pulse_api::stages::{ThoughtPooling, ThoughtSpaceSection, ThoughtTrain};
use pulse_backbones::bert::{
    length_buckets, BertConfig, EncoderFiles, EncoderOptions, Freeze, Pooling, TextTokenizer,
    TokenBatch, TrainableEncoder,
};
use rand::Rng;
use std::path::Path;

/// Which side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Behaviour,
    Rationale,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Behaviour => "behaviour",
            Side::Rationale => "rationale",
        }
    }
}

/// A linear projection `x Wᵀ + b`.
struct Head {
    weight: Var,
    bias: Var,
}

/// Texts encoded per inference pass.
const ENCODE_BATCH: usize = 64;

/// Sequences per forward pass in training. A batch's sequences are sorted by length and run
/// in chunks of this many, each padded only to its own longest member: random batches of
/// behaviour texts otherwise pad every sequence to the batch's longest, a fifth or more of
/// the work on ml-100k. Chunks this size still give the matmuls hundreds of rows.
const TRAIN_CHUNK: usize = 8;

/// The encoders and heads of both sides.
pub(crate) struct Towers {
    behaviour: TrainableEncoder,
    /// `None`: the behaviour encoder serves both sides.
    rationale: Option<TrainableEncoder>,
    /// Behaviour and rationale heads, in `heads_map` as `behaviour.weight` and so on.
    heads: Option<(Head, Head)>,
    heads_map: VarMap,
    train: ThoughtTrain,
    device: Device,
}

/// Trainable weights at one point of training.
pub(crate) struct Snapshot(Vec<(Var, Tensor)>);

/// The `Freeze` of the encoders for a section (`layers`: the encoder's layer count).
fn freeze(s: &ThoughtSpaceSection, layers: usize) -> Freeze {
    match s.train {
        ThoughtTrain::Encoder if s.freeze_layers == 0 => Freeze::Nothing,
        ThoughtTrain::Encoder => Freeze::Layers(s.freeze_layers),
        ThoughtTrain::Layers => Freeze::Embeddings,
        ThoughtTrain::Heads => Freeze::Layers(layers),
    }
}

fn l2(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

impl Towers {
    /// Loads the encoder(s) from `files` and initialises the heads (seeded by `s.seed`).
    pub fn load(
        files: &EncoderFiles,
        device: &Device,
        s: &ThoughtSpaceSection,
    ) -> Result<Self, StageError> {
        let cfg = BertConfig::from_json(&files.config)?;
        let opts = EncoderOptions {
            batch_size: ENCODE_BATCH,
            max_len: Some(s.max_tokens),
            // Normalised after the head, in `project`.
            normalize: false,
            dtype: DType::F32,
        };
        let fr = freeze(s, cfg.num_hidden_layers);
        let load = || -> Result<TrainableEncoder, StageError> {
            let mut e = TrainableEncoder::from_files(files, device, opts.clone(), fr)?;
            match s.pooling {
                ThoughtPooling::Default => {}
                ThoughtPooling::Mean => e.set_pooling(Pooling::Mean),
                ThoughtPooling::Cls => e.set_pooling(Pooling::Cls),
            }
            Ok(e)
        };
        let behaviour = load()?;
        let rationale = if s.shared { None } else { Some(load()?) };
        let heads_map = VarMap::new();
        let heads = if s.projection > 0 {
            let d = cfg.hidden_size;
            let mut rng = super::rng(s.seed, super::STREAM_HEADS);
            let mut head = |side: Side| -> Result<Head, StageError> {
                // PyTorch's `nn.Linear` bound, so a fresh head roughly keeps the geometry of
                // the encoder's space (a random projection) and epoch 0 is meaningful.
                let bound = 1.0 / (d as f32).sqrt();
                let w: Vec<f32> = (0..s.projection * d)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let weight = Var::from_tensor(&Tensor::from_vec(w, (s.projection, d), device)?)?;
                let bias = Var::zeros(s.projection, DType::F32, device)?;
                let mut vars = heads_map
                    .data()
                    .lock()
                    .map_err(|_| StageError::Invalid("head variable map lock poisoned".into()))?;
                vars.insert(format!("{}.weight", side.name()), weight.clone());
                vars.insert(format!("{}.bias", side.name()), bias.clone());
                Ok(Head { weight, bias })
            };
            Some((head(Side::Behaviour)?, head(Side::Rationale)?))
        } else {
            None
        };
        Ok(Self {
            behaviour,
            rationale,
            heads,
            heads_map,
            train: s.train,
            device: device.clone(),
        })
    }

    /// Whether the encoders train (every mode but `heads`).
    pub fn encoders_train(&self) -> bool {
        self.train != ThoughtTrain::Heads
    }

    pub fn encoder(&self, side: Side) -> &TrainableEncoder {
        match (side, &self.rationale) {
            (Side::Rationale, Some(r)) => r,
            _ => &self.behaviour,
        }
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        self.behaviour.encoder().tokenizer()
    }

    /// The variables the optimizer steps, in a fixed order.
    pub fn trainable_vars(&self) -> Vec<Var> {
        let mut vars = Vec::new();
        if self.encoders_train() {
            vars.extend(self.behaviour.trainable_vars());
            if let Some(r) = &self.rationale {
                vars.extend(r.trainable_vars());
            }
        }
        if let Some((b, r)) = &self.heads {
            for h in [b, r] {
                vars.push(h.weight.clone());
                vars.push(h.bias.clone());
            }
        }
        vars
    }

    /// Pooled encoder outputs `(n, hidden)` of token sequences, without gradients.
    pub fn pooled(&self, side: Side, ids: &[Vec<u32>]) -> Result<Tensor, StageError> {
        Ok(self.encoder(side).encoder().encode_ids(ids)?.detach())
    }

    /// Head (if any) and L2 normalisation of pooled outputs.
    pub fn project(&self, side: Side, pooled: &Tensor) -> Result<Tensor, StageError> {
        let head = self.heads.as_ref().map(|(b, r)| match side {
            Side::Behaviour => b,
            Side::Rationale => r,
        });
        let z = match head {
            Some(h) => pooled
                .matmul(&h.weight.as_tensor().t()?)?
                .broadcast_add(h.bias.as_tensor())?,
            None => pooled.clone(),
        };
        Ok(l2(&z)?)
    }

    /// Unit vectors `(n, dim)` of one batch of token sequences, in their order, with the
    /// autograd graph. The batch runs in chunks of similar length (see [`TRAIN_CHUNK`]); the
    /// loss still sees the whole batch at once.
    pub fn forward(&self, side: Side, seqs: &[&[u32]]) -> Result<Tensor, StageError> {
        let enc = self.encoder(side);
        let pad = self.tokenizer().pad_id();
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let buckets = length_buckets(&lengths, TRAIN_CHUNK);
        let mut parts = Vec::with_capacity(buckets.len());
        let mut order = Vec::with_capacity(seqs.len());
        for bucket in &buckets {
            let chunk: Vec<&[u32]> = bucket.iter().map(|&i| seqs[i]).collect();
            let batch = TokenBatch::new(&chunk, pad, DType::F32, &self.device)?;
            parts.push(enc.forward(&batch)?);
            order.extend_from_slice(bucket);
        }
        let sorted = Tensor::cat(&parts, 0)?;
        // `order[k]` is the input index of sorted row k; invert it to put rows back.
        let mut inverse = vec![0u32; order.len()];
        for (row, &input) in order.iter().enumerate() {
            inverse[input] = row as u32;
        }
        let inverse = Tensor::from_vec(inverse, order.len(), &self.device)?;
        self.project(side, &sorted.index_select(&inverse, 0)?)
    }

    /// Unit vectors of token sequences for the output tables, without gradients.
    pub fn vectors(&self, side: Side, ids: &[Vec<u32>]) -> Result<Tensor, StageError> {
        let pooled = self.pooled(side, ids)?;
        Ok(self.project(side, &pooled)?.detach())
    }

    /// A copy of every trainable weight.
    pub fn snapshot(&self) -> Result<Snapshot, StageError> {
        let mut out = Vec::new();
        for v in self.trainable_vars() {
            let copy = v.as_tensor().copy()?.detach();
            out.push((v, copy));
        }
        Ok(Snapshot(out))
    }

    /// Puts the weights of a snapshot back.
    pub fn restore(&self, snap: &Snapshot) -> Result<(), StageError> {
        for (v, t) in &snap.0 {
            v.set(t)?;
        }
        Ok(())
    }

    /// Writes the current weights into `dir`: the encoder(s) when `encoders` (they trained and
    /// differ from the checkpoint: `encoder.safetensors` when shared, else
    /// `behaviour.safetensors` and `rationale.safetensors`; whole encoders, frozen parts
    /// included, so each file loads on its own) and `heads.safetensors` when there are heads.
    /// No encoder file means the checkpoint's weights. Returns the file names.
    pub fn save(&self, dir: &Path, encoders: bool) -> Result<Vec<String>, StageError> {
        let mut files: Vec<(&str, &VarMap)> = Vec::new();
        if encoders {
            match &self.rationale {
                None => files.push(("encoder.safetensors", self.behaviour.varmap())),
                Some(r) => {
                    files.push(("behaviour.safetensors", self.behaviour.varmap()));
                    files.push(("rationale.safetensors", r.varmap()));
                }
            }
        }
        if self.heads.is_some() {
            files.push(("heads.safetensors", &self.heads_map));
        }
        for (name, map) in &files {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            map.save(&tmp)?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        Ok(files.into_iter().map(|(n, _)| n.to_string()).collect())
    }
}
