//! Loading a GGUF model's tensors, and the one choice that matters for speed on small models:
//! how projection weights are held. Quantized as stored (candle's quantized matmul: the least
//! memory traffic), dequantized once to a dense matrix (a real GEMM: better when many sequences
//! share each weight read), or re-quantized to the 8-bit tile format of [`super::int8`]
//! (integer dot products: the fastest on CPUs with AVX-512 VNNI). See [`WeightFormat`].
//!
//! Measured (`examples/slm_throughput.rs`, 2 threads, batched greedy generation of ml-100k
//! rationale prompts on a shared 2-core AVX-512 VNNI machine, so absolute numbers are noisy but
//! the order held in every run): SmolLM2-135M (Q4_1), 8 prompts × 32 new tokens, total time
//! 4.2 s `int8`, 16.3 s `f32`, 192 s `quantized`; Qwen2.5-0.5B (Q8_0), 4 prompts × 16 tokens,
//! 2.6 s `int8`, 11.7 s `f32`. Batched prefill and decoding are matrix products over many rows:
//! candle's quantized kernels are matrix-vector products that re-read and re-decode every weight
//! block for each row, so they lose by an order of magnitude once rows share a weight read; a
//! dense f32 GEMM reuses each weight across rows but moves 4 bytes per weight and does one
//! multiply-add per instruction lane; the 8-bit tiles move 1 byte and `vpdpbusd` does four
//! multiply-adds per lane. Hence `Auto` = `int8` at every model size where VNNI exists. Without
//! VNNI the int8 kernel is portable scalar code, so `Auto` falls back to dense f32 for small
//! models and to the quantized kernels above [`AUTO_DENSE_MAX_PARAMS`], where f32 weights would
//! no longer fit comfortably in memory.

use super::config::Config;
use super::int8::{self, PackedInt8};
use crate::BackboneError;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

/// How projection weights are held in memory.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// The fastest measured choice for the device: `int8` on CPUs with AVX-512 VNNI, else
    /// `f32` for models up to [`AUTO_DENSE_MAX_PARAMS`] and `quantized` above; `f16` on CUDA.
    #[default]
    Auto,
    /// As stored in the file (Q4_1, Q4_K, …), multiplied by candle's quantized kernels.
    Quantized,
    /// Dequantized once to f32.
    F32,
    /// Dequantized once to f16 (for GPUs).
    F16,
    /// Re-quantized once to 8-bit tiles, multiplied with 8-bit integer dot products (CPU only;
    /// AVX-512 VNNI, with a slow portable fallback elsewhere).
    Int8,
}

/// Largest model (in projection parameters) that `Auto` dequantizes to f32 on a CPU without
/// VNNI. At 135M parameters dense f32 weights take 0.5 GB; at 0.5B they would take 2 GB and the
/// quantized kernels' smaller reads win back.
pub const AUTO_DENSE_MAX_PARAMS: usize = 200_000_000;

impl WeightFormat {
    /// The concrete format for a model with `params` projection parameters on `device`.
    pub fn resolve(self, params: usize, device: &Device) -> WeightFormat {
        match self {
            WeightFormat::Auto | WeightFormat::Int8 if !device.is_cpu() => WeightFormat::F16,
            WeightFormat::Auto if int8::supported() => WeightFormat::Int8,
            WeightFormat::Auto if params <= AUTO_DENSE_MAX_PARAMS => WeightFormat::F32,
            WeightFormat::Auto => WeightFormat::Quantized,
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
enum Weights {
    Candle(QMatMul),
    /// Packed weights and the bias, which the packed product adds itself.
    Int8(Arc<PackedInt8>, Option<Arc<Vec<f32>>>),
}

/// A projection `y = x Wᵀ (+ b)`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    w: Weights,
    bias: Option<Tensor>,
}

/// The packed product as a candle operation on CPU tensors `[rows, k]`.
struct Int8MatMul<'a>(&'a PackedInt8, Option<&'a [f32]>);

impl CustomOp1 for Int8MatMul<'_> {
    fn name(&self) -> &'static str {
        "int8-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("int8-matmul: expected f32 input");
        };
        let Some((o1, o2)) = l.contiguous_offsets() else {
            candle_core::bail!("int8-matmul: input must be contiguous");
        };
        let (rows, k) = l.shape().dims2()?;
        if k != self.0.k() {
            candle_core::bail!("int8-matmul: input width {k}, weights {}", self.0.k());
        }
        let out = self.0.matmul(&x[o1..o2], rows, self.1);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.0.n()))))
    }
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Flatten to 2-D so a dense weight is used as-is rather than broadcast per batch row.
        let dims = x.dims().to_vec();
        let (last, lead) = match dims.split_last() {
            Some((l, lead)) => (*l, lead),
            None => candle_core::bail!("linear input must have at least one dimension"),
        };
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, last))?;
        let mut y = match &self.w {
            Weights::Int8(p, b) => {
                let y = x2
                    .contiguous()?
                    .apply_op1_no_bwd(&Int8MatMul(p, b.as_deref().map(Vec::as_slice)))?;
                let mut out = lead.to_vec();
                out.push(y.dim(1)?);
                return y.reshape(out);
            }
            Weights::Candle(QMatMul::Tensor(w)) => x2.matmul(&w.t()?)?,
            Weights::Candle(QMatMul::TensorF16(w)) => x2
                .to_dtype(DType::F16)?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32)?,
            Weights::Candle(q) => q.forward(&x2)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }

    /// One projection computing all of `parts` side by side (outputs concatenated), when they
    /// are dense: one matrix product instead of several small ones. `None` for quantized
    /// weights, which stay separate (their block types may differ).
    pub(crate) fn fuse(parts: &[&Linear]) -> candle_core::Result<Option<Linear>> {
        let mut ws = Vec::with_capacity(parts.len());
        for p in parts {
            match &p.w {
                Weights::Candle(QMatMul::Tensor(w)) | Weights::Candle(QMatMul::TensorF16(w)) => {
                    ws.push(w.clone())
                }
                _ => return Ok(None),
            }
        }
        let w = Tensor::cat(&ws, 0)?;
        let bias = if parts.iter().any(|p| p.bias.is_some()) {
            let mut bs = Vec::with_capacity(parts.len());
            for (p, w) in parts.iter().zip(&ws) {
                bs.push(match &p.bias {
                    Some(b) => b.clone(),
                    None => Tensor::zeros(w.dim(0)?, DType::F32, w.device())?,
                });
            }
            Some(Tensor::cat(&bs, 0)?)
        } else {
            None
        };
        let w = match &parts[0].w {
            Weights::Candle(QMatMul::TensorF16(_)) => QMatMul::TensorF16(w),
            _ => QMatMul::Tensor(w),
        };
        Ok(Some(Linear {
            w: Weights::Candle(w),
            bias,
        }))
    }

    /// This projection in `format`: dense f32 weights are packed for [`WeightFormat::Int8`];
    /// anything else is returned as is.
    pub(crate) fn finish(self, format: WeightFormat) -> candle_core::Result<Linear> {
        match (&self.w, format) {
            (Weights::Candle(QMatMul::Tensor(w)), WeightFormat::Int8) => {
                let (n, k) = w.dims2()?;
                let data = w.flatten_all()?.to_vec1::<f32>()?;
                match PackedInt8::from_f32(&data, n, k) {
                    Some(p) => {
                        let bias = match &self.bias {
                            Some(b) => Some(Arc::new(b.to_vec1::<f32>()?)),
                            None => None,
                        };
                        Ok(Linear {
                            w: Weights::Int8(Arc::new(p), bias),
                            bias: None,
                        })
                    }
                    // Widths that are no multiple of 32 stay dense.
                    None => Ok(self),
                }
            }
            _ => Ok(self),
        }
    }
}

/// Reads tensors out of one GGUF file.
pub(crate) struct Loader<'a, R> {
    pub(crate) content: &'a Content,
    pub(crate) reader: &'a mut R,
    pub(crate) device: &'a Device,
    pub(crate) format: WeightFormat,
    pub(crate) path: &'a Path,
}

impl<R: Read + Seek> Loader<'_, R> {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub(crate) fn qtensor(&mut self, name: &str) -> Result<QTensor, BackboneError> {
        if !self.has(name) {
            return Err(BackboneError::Gguf {
                path: self.path.to_path_buf(),
                reason: format!("no tensor `{name}`"),
            });
        }
        self.content
            .tensor(self.reader, name, self.device)
            .map_err(|e| BackboneError::Gguf {
                path: self.path.to_path_buf(),
                reason: format!("tensor `{name}`: {e}"),
            })
    }

    /// A small tensor (norm weights, biases) as f32.
    pub(crate) fn dense(&mut self, name: &str) -> Result<Tensor, BackboneError> {
        Ok(self.qtensor(name)?.dequantize(self.device)?)
    }

    pub(crate) fn opt_dense(&mut self, name: &str) -> Result<Option<Tensor>, BackboneError> {
        if self.has(name) {
            self.dense(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn linear_from(
        &self,
        q: Arc<QTensor>,
        bias: Option<Tensor>,
    ) -> Result<Linear, BackboneError> {
        // Int8 starts dense: packing happens after projections are fused (`Linear::finish`).
        let w = match self.format {
            WeightFormat::F32 | WeightFormat::Int8 => QMatMul::Tensor(q.dequantize(self.device)?),
            WeightFormat::F16 => QMatMul::TensorF16(q.dequantize_f16(self.device)?),
            WeightFormat::Quantized | WeightFormat::Auto => QMatMul::from_arc(q)?,
        };
        Ok(Linear {
            w: Weights::Candle(w),
            bias,
        })
    }

    /// `name.weight` with `name.bias` if the file has one.
    pub(crate) fn linear(&mut self, name: &str) -> Result<Linear, BackboneError> {
        let q = Arc::new(self.qtensor(&format!("{name}.weight"))?);
        let bias = self.opt_dense(&format!("{name}.bias"))?;
        self.linear_from(q, bias)
    }
}

/// Parameters in the projections of a model of this shape (what dense weights cost), without
/// the embedding table.
pub(crate) fn projection_params(cfg: &Config) -> usize {
    let q = cfg.n_head * cfg.head_dim;
    let kv = cfg.n_head_kv * cfg.head_dim;
    let per_layer = cfg.n_embd * (q + 2 * kv) + q * cfg.n_embd + 3 * cfg.n_embd * cfg.n_ff;
    per_layer * cfg.n_layer
}

/// Whether the file's output projection is its embedding table (tied weights).
pub(crate) fn output_is_tied(content: &Content) -> bool {
    !content.tensor_infos.contains_key("output.weight")
}
