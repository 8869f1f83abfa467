//! The key/value cache of a batch of sequences decoded together.
//!
//! Every layer holds `k` and `v` as `[batch, kv_heads, capacity, head_dim]`. All rows advance
//! one slot per decoding step, so slot `s` is the same step for every row; a row whose prompt
//! is shorter than the longest starts later (left padding), and its `start` marks its first
//! real slot. Attention masks hide the slots before `start`; rotary positions count from it,
//! so padding never shifts a sequence's positions. Rows leave with [`KvCache::keep_rows`] and
//! join with [`KvCache::concat`], which re-aligns them; slots before every row's start are never
//! read.

use candle_core::{DType, Device, Tensor};

#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    /// Per layer `(k, v)`, each `[batch, kv_heads, capacity, head_dim]`.
    layers: Vec<(Tensor, Tensor)>,
    /// Slots filled (the same for all rows).
    len: usize,
    /// First real slot of each row.
    starts: Vec<usize>,
    n_kv: usize,
    head_dim: usize,
    device: Device,
}

impl KvCache {
    /// An empty cache for `rows` sequences with room for `capacity` slots.
    pub(crate) fn new(
        n_layer: usize,
        rows: usize,
        n_kv: usize,
        head_dim: usize,
        capacity: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            let shape = (rows, n_kv, capacity, head_dim);
            layers.push((
                Tensor::zeros(shape, DType::F32, device)?,
                Tensor::zeros(shape, DType::F32, device)?,
            ));
        }
        Ok(Self {
            layers,
            len: 0,
            starts: vec![0; rows],
            n_kv,
            head_dim,
            device: device.clone(),
        })
    }

    pub(crate) fn rows(&self) -> usize {
        self.starts.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn starts(&self) -> &[usize] {
        &self.starts
    }

    fn capacity(&self) -> usize {
        self.layers
            .first()
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    /// The earliest slot any row reads.
    pub(crate) fn first_live_slot(&self) -> usize {
        self.starts.iter().copied().min().unwrap_or(0).min(self.len)
    }

    /// Makes room for `extra` more slots, reallocating (and copying) if needed.
    pub(crate) fn reserve(&mut self, extra: usize) -> candle_core::Result<()> {
        let need = self.len + extra;
        if need <= self.capacity() {
            return Ok(());
        }
        // Grow geometrically so that long generations do not copy at every step.
        let new_cap = need.max(self.capacity() * 3 / 2);
        for (k, v) in &mut self.layers {
            *k = grow(k, self.len, new_cap)?;
            *v = grow(v, self.len, new_cap)?;
        }
        Ok(())
    }

    /// Writes `k`, `v` (`[rows, kv_heads, n, head_dim]`) of layer `layer` at the current end
    /// and returns the live part of the layer's cache including them. Call
    /// [`Self::advance`] once all layers are written.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let from = self.first_live_slot();
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        let live = self.len + n - from;
        Ok((kc.narrow(2, from, live)?, vc.narrow(2, from, live)?))
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Keeps only `rows` (indices into the current rows, in the new order).
    pub(crate) fn keep_rows(&mut self, rows: &[usize]) -> candle_core::Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &self.device)?;
        for (k, v) in &mut self.layers {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        self.starts = rows.iter().map(|&r| self.starts[r]).collect();
        // Drop slots no remaining row reads, so the rows keep room for their generation.
        let from = self.first_live_slot();
        if from > 0 {
            for (k, v) in &mut self.layers {
                *k = shift(k, from, self.len)?;
                *v = shift(v, from, self.len)?;
            }
            self.len -= from;
            for s in &mut self.starts {
                *s -= from;
            }
        }
        Ok(())
    }

    /// The rows of all `parts`, in order, right-aligned at the longest length, with room for
    /// `extra` more slots. Each part's tensors are copied once.
    pub(crate) fn concat(parts: Vec<KvCache>, extra: usize) -> candle_core::Result<KvCache> {
        let parts: Vec<KvCache> = parts.into_iter().filter(|p| p.rows() > 0).collect();
        let Some(first) = parts.first() else {
            candle_core::bail!("no rows to concatenate");
        };
        let len = parts.iter().map(|p| p.len).max().unwrap_or(0);
        let cap = len + extra;
        let mut layers = Vec::with_capacity(first.layers.len());
        for l in 0..first.layers.len() {
            let mut ks = Vec::with_capacity(parts.len());
            let mut vs = Vec::with_capacity(parts.len());
            for p in &parts {
                let (k, v) = &p.layers[l];
                ks.push(realign(k, p.len, len, cap)?);
                vs.push(realign(v, p.len, len, cap)?);
            }
            layers.push((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?));
        }
        let starts = parts
            .iter()
            .flat_map(|p| p.starts.iter().map(move |s| s + len - p.len))
            .collect();
        Ok(KvCache {
            layers,
            len,
            starts,
            n_kv: first.n_kv,
            head_dim: first.head_dim,
            device: first.device.clone(),
        })
    }

    /// An independent copy with room for `extra` more slots (writes to it never reach `self`).
    pub(crate) fn fork(&self, extra: usize) -> candle_core::Result<KvCache> {
        let cap = self.len + extra;
        let mut out = self.clone();
        for (k, v) in &mut out.layers {
            *k = grow(k, self.len, cap)?;
            *v = grow(v, self.len, cap)?;
        }
        Ok(out)
    }
}

/// `t` (`[rows, heads, cap, d]`, `len` slots filled) copied into a larger capacity.
fn grow(t: &Tensor, len: usize, cap: usize) -> candle_core::Result<Tensor> {
    let (rows, heads, _, d) = t.dims4()?;
    let out = Tensor::zeros((rows, heads, cap, d), t.dtype(), t.device())?;
    if len > 0 {
        out.slice_set(&t.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
    }
    Ok(out)
}

/// `t` with its slots `[from, len)` moved to the front, same capacity.
fn shift(t: &Tensor, from: usize, len: usize) -> candle_core::Result<Tensor> {
    let (rows, heads, cap, d) = t.dims4()?;
    let out = Tensor::zeros((rows, heads, cap, d), t.dtype(), t.device())?;
    if len > from {
        out.slice_set(&t.narrow(2, from, len - from)?.contiguous()?, 2, 0)?;
    }
    Ok(out)
}

/// `t` (`len` slots filled) with its filled slots ending at `new_len`, capacity `cap`.
fn realign(t: &Tensor, len: usize, new_len: usize, cap: usize) -> candle_core::Result<Tensor> {
    let (rows, heads, _, d) = t.dims4()?;
    let out = Tensor::zeros((rows, heads, cap, d), t.dtype(), t.device())?;
    if len > 0 {
        out.slice_set(&t.narrow(2, 0, len)?.contiguous()?, 2, new_len - len)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-layer cache with `rows` rows whose slot `s` of row `r` holds `100 r + s`.
    fn filled(rows: usize, len: usize, starts: Vec<usize>) -> KvCache {
        let mut c = KvCache::new(1, rows, 1, 1, len, &Device::Cpu).unwrap();
        let data: Vec<f32> = (0..rows)
            .flat_map(|r| (0..len).map(move |s| (100 * r + s) as f32))
            .collect();
        let t = Tensor::from_vec(data, (rows, 1, len, 1), &Device::Cpu).unwrap();
        c.append(0, &t, &t).unwrap();
        c.advance(len);
        c.starts = starts;
        c
    }

    fn slots(c: &KvCache) -> Vec<Vec<f32>> {
        let k = c.layers[0].0.narrow(2, 0, c.len).unwrap();
        k.flatten_from(1).unwrap().to_vec2().unwrap()
    }

    #[track_caller]
    fn check(c: &KvCache, starts: &[usize], rows: &[&[f32]]) {
        assert_eq!(c.starts, starts);
        let want: Vec<Vec<f32>> = rows.iter().map(|r| r.to_vec()).collect();
        assert_eq!(slots(c), want);
    }

    #[test]
    fn rows_leave_and_join_aligned() {
        let c = filled(3, 3, vec![0, 1, 2]);
        check(
            &c,
            &[0, 1, 2],
            &[&[0., 1., 2.], &[100., 101., 102.], &[200., 201., 202.]],
        );
        // Row 0 leaves: slot 0 is no longer read by anyone and is dropped.
        let mut kept = c.clone();
        kept.keep_rows(&[2, 1]).unwrap();
        check(&kept, &[1, 0], &[&[201., 202.], &[101., 102.]]);
        // A longer sequence joins: the others are padded on the left.
        let newcomer = filled(1, 4, vec![0]);
        let joined = KvCache::concat(vec![kept, newcomer], 5).unwrap();
        check(
            &joined,
            &[3, 2, 0],
            &[
                &[0., 0., 201., 202.],
                &[0., 0., 101., 102.],
                &[0., 1., 2., 3.],
            ],
        );
        assert_eq!(joined.capacity(), 9);
        // A fork is independent of its origin.
        let origin = filled(1, 2, vec![0]);
        let mut fork = origin.fork(1).unwrap();
        let t = Tensor::from_vec(vec![5f32], (1, 1, 1, 1), &Device::Cpu).unwrap();
        fork.append(0, &t, &t).unwrap();
        fork.advance(1);
        check(&fork, &[0], &[&[0., 1., 5.]]);
        check(&origin, &[0], &[&[0., 1.]]);
    }

    #[test]
    fn appends_grow_the_capacity() {
        let mut c = filled(1, 2, vec![0]);
        c.reserve(3).unwrap();
        let t = Tensor::from_vec(vec![7f32, 8., 9.], (1, 1, 3, 1), &Device::Cpu).unwrap();
        let (k, _) = c.append(0, &t, &t).unwrap();
        c.advance(3);
        assert_eq!(
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 1., 7., 8., 9.]
        );
        check(&c, &[0], &[&[0., 1., 7., 8., 9.]]);
    }
}
