//! Typed access to GGUF metadata: each getter names the key in its error, so a malformed or
//! foreign GGUF file fails with the key that is wrong rather than a bare type error.

use crate::BackboneError;
use candle_core::quantized::gguf_file::{Content, Value};

/// A view of a GGUF file's metadata.
#[derive(Clone, Copy)]
pub(crate) struct Meta<'a> {
    pub(crate) content: &'a Content,
}

fn bad(key: &str, reason: impl std::fmt::Display) -> BackboneError {
    BackboneError::Metadata {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

impl<'a> Meta<'a> {
    pub(crate) fn new(content: &'a Content) -> Self {
        Self { content }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, BackboneError> {
        self.get(key).ok_or_else(|| bad(key, "missing"))
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, BackboneError> {
        self.required(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| bad(key, e))
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, BackboneError> {
        self.get(key)
            .map(|v| v.to_string().map(String::as_str).map_err(|e| bad(key, e)))
            .transpose()
    }

    /// An unsigned integer of any width (writers differ in the width they use).
    pub(crate) fn uint(&self, key: &str) -> Result<u64, BackboneError> {
        as_u64(self.required(key)?).ok_or_else(|| bad(key, "not a non-negative integer"))
    }

    pub(crate) fn opt_uint(&self, key: &str) -> Result<Option<u64>, BackboneError> {
        self.get(key)
            .map(|v| as_u64(v).ok_or_else(|| bad(key, "not a non-negative integer")))
            .transpose()
    }

    pub(crate) fn opt_f32(&self, key: &str) -> Result<Option<f32>, BackboneError> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                other => as_u64(other)
                    .map(|x| x as f32)
                    .ok_or_else(|| bad(key, "not a number")),
            })
            .transpose()
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, BackboneError> {
        self.get(key)
            .map(|v| v.to_bool().map_err(|e| bad(key, e)))
            .transpose()
    }

    pub(crate) fn str_array(&self, key: &str) -> Result<Vec<&'a str>, BackboneError> {
        let arr = self.required(key)?.to_vec().map_err(|e| bad(key, e))?;
        arr.iter()
            .map(|v| v.to_string().map(String::as_str).map_err(|e| bad(key, e)))
            .collect()
    }

    pub(crate) fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, BackboneError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v.to_vec().map_err(|e| bad(key, e))?;
        arr.iter()
            .map(|v| v.to_f32().map_err(|e| bad(key, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(crate) fn opt_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, BackboneError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v.to_vec().map_err(|e| bad(key, e))?;
        arr.iter()
            .map(|v| as_i64(v).ok_or_else(|| bad(key, "not an integer array")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|x| u64::try_from(x).ok())
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}
