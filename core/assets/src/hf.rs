//! The optional `hf:` model source, for users with network access: `hf:OWNER/REPO/FILE[@REVISION]`
//! names one file of a model repository on the Hugging Face Hub, downloaded with the `hf-hub`
//! crate into `CACHE/hf/` (the Hub's own cache layout, so repeated runs reuse the file).
//!
//! Parsing is always compiled, so a spec with an `hf:` source validates everywhere; fetching
//! needs the `hf` cargo feature (`cargo build --release --features hf`), which pulse's default
//! build leaves out because the machines it targets are offline. Without a pinned revision the
//! file is whatever the repository's `main` holds at download time; stage cache keys therefore
//! include the revision, and a pinned commit (`@<sha>`) is the reproducible choice.

use crate::AssetError;
use std::path::{Path, PathBuf};

/// One file of a Hub model repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSource {
    /// `OWNER/REPO`.
    pub repo: String,
    /// Path of the file inside the repository.
    pub file: String,
    /// Branch, tag or commit (`main` when not given).
    pub revision: String,
}

impl HfSource {
    /// Parses `hf:OWNER/REPO/FILE[@REVISION]`; `None` when `source` does not start with `hf:`.
    pub fn parse(source: &str) -> Option<Result<Self, String>> {
        let rest = source.strip_prefix("hf:")?;
        let (path, revision) = match rest.rsplit_once('@') {
            Some((p, r)) if !r.is_empty() && !r.contains('/') => (p, r.to_string()),
            _ => (rest, "main".to_string()),
        };
        let mut parts = path.splitn(3, '/');
        let (owner, repo, file) = (parts.next(), parts.next(), parts.next());
        Some(match (owner, repo, file) {
            (Some(o), Some(r), Some(f)) if !o.is_empty() && !r.is_empty() && !f.is_empty() => {
                Ok(Self {
                    repo: format!("{o}/{r}"),
                    file: f.to_string(),
                    revision,
                })
            }
            _ => Err(format!(
                "'{source}' is not an hf: source; write hf:OWNER/REPO/FILE or \
                 hf:OWNER/REPO/FILE@REVISION"
            )),
        })
    }

    /// A stable identity for cache keys.
    pub fn id(&self) -> String {
        format!("hf:{}/{}@{}", self.repo, self.file, self.revision)
    }
}

/// Downloads (or finds in the cache) the file `src` names; `HF_TOKEN` is used when set.
#[cfg(feature = "hf")]
pub fn fetch_hf(cache_dir: &Path, src: &HfSource) -> Result<PathBuf, AssetError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let fail = |e: hf_hub::api::sync::ApiError| AssetError::Hf {
        source_id: src.id(),
        detail: e.to_string(),
    };
    let api = ApiBuilder::new()
        .with_cache_dir(cache_dir.join("hf"))
        .with_token(std::env::var("HF_TOKEN").ok())
        .with_progress(true)
        .build()
        .map_err(fail)?;
    api.repo(Repo::with_revision(
        src.repo.clone(),
        RepoType::Model,
        src.revision.clone(),
    ))
    .get(&src.file)
    .map_err(fail)
}

/// Without the `hf` feature: an error that says how to get it.
#[cfg(not(feature = "hf"))]
pub fn fetch_hf(cache_dir: &Path, src: &HfSource) -> Result<PathBuf, AssetError> {
    let _ = cache_dir;
    Err(AssetError::Hf {
        source_id: src.id(),
        detail: "this pulse was built without hf: sources; rebuild with \
                 `cargo build --release --features hf` (needs network access), or download the \
                 file yourself and give path = \"…\""
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(source: &str, expected: Option<Result<(&str, &str, &str), ()>>) {
        let got = HfSource::parse(source).map(|r| {
            r.map(|s| (s.repo, s.file, s.revision))
                .map_err(|e| assert!(e.contains("hf:OWNER/REPO/FILE"), "{e}"))
        });
        let want =
            expected.map(|r| r.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
        assert_eq!(got, want, "{source}");
    }

    #[test]
    fn hf_sources_parse() {
        check("smollm2-135m-instruct", None);
        check("hf:o/r/model.gguf", Some(Ok(("o/r", "model.gguf", "main"))));
        check(
            "hf:o/r/sub/dir/m.gguf@v1.0",
            Some(Ok(("o/r", "sub/dir/m.gguf", "v1.0"))),
        );
        check("hf:o/r/m.gguf@", Some(Ok(("o/r", "m.gguf@", "main"))));
        check("hf:o/r", Some(Err(())));
        check("hf://m.gguf", Some(Err(())));
        let s = HfSource::parse("hf:o/r/m.gguf@abc").unwrap().unwrap();
        assert_eq!(s.id(), "hf:o/r/m.gguf@abc");
    }

    #[cfg(not(feature = "hf"))]
    #[test]
    fn without_the_feature_fetching_says_how_to_enable_it() {
        let s = HfSource::parse("hf:o/r/m.gguf").unwrap().unwrap();
        let err = fetch_hf(Path::new("/nonexistent"), &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--features hf") && err.contains("hf:o/r/m.gguf@main"),
            "{err}"
        );
    }
}
