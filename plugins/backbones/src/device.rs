//! `device = "cpu" | "cuda:N"`: parsing the spec's device string and opening the candle device.
//! A CPU build asked for CUDA says which cargo feature to enable instead of failing obscurely.

use crate::BackboneError;
use candle_core::Device;
use std::str::FromStr;

/// Where a backbone runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// CUDA device by ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = BackboneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BackboneError::Device {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| bad("the ordinal after `cuda:` must be a number, as in `cuda:0`")),
                None => Err(bad("expected `cpu` or `cuda:N`")),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device.
    pub fn open(self) -> Result<Device, BackboneError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(BackboneError::Device {
                        spec: self.to_string(),
                        reason: "this build has no CUDA support; rebuild with \
                                 `--features pulse-backbones/cuda` (needs the CUDA toolkit)"
                            .into(),
                    });
                }
                Device::new_cuda(n).map_err(|e| BackboneError::Device {
                    spec: self.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<DeviceSpec, &str>) {
        match (input.parse::<DeviceSpec>(), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn device_strings_parse() {
        check("cpu", Ok(DeviceSpec::Cpu));
        check("cuda:1", Ok(DeviceSpec::Cuda(1)));
        check("cuda", Ok(DeviceSpec::Cuda(0)));
        check("cuda:x", Err("must be a number"));
        check("gpu", Err("expected `cpu` or `cuda:N`"));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_build_explains_cuda() {
        let r = DeviceSpec::Cuda(0).open();
        if cfg!(feature = "cuda") {
            return;
        }
        let e = r.unwrap_err().to_string();
        assert!(e.contains("--features pulse-backbones/cuda"), "{e}");
    }
}
