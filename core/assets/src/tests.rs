//! Tests of member fetching on archives built here, plus one real download from the registry.

use super::*;
use std::io::Write;

/// Writes a wheel-shaped zip with `members` into `cache/dl/` and returns its path.
fn fake_wheel(cache: &Path, name: &str, members: &[(&str, &[u8])]) -> PathBuf {
    let dl = cache.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let path = dl.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (member, bytes) in members {
        zip.start_file(*member, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn member(member: &'static str, sha256: &'static str) -> PipMember {
    PipMember {
        package: "fake-pkg",
        version: "1.0",
        member,
        sha256,
    }
}

/// Fetches `m` from a cache holding one fake wheel and compares the outcome: `Ok(bytes)` or
/// `Err(fragments the message must contain)`.
#[track_caller]
fn check(m: PipMember, expected: Result<&[u8], &[&str]>) {
    let dir = tempfile::tempdir().unwrap();
    let wheel = fake_wheel(
        dir.path(),
        "fake_pkg-1.0-py3-none-any.whl",
        &[("fake_pkg/hello.txt", b"hello")],
    );
    match (fetch_member(dir.path(), &m), expected) {
        (Ok(bytes), Ok(want)) => assert_eq!(bytes, want),
        (Err(e), Err(fragments)) => {
            let msg = e.to_string();
            for f in fragments {
                assert!(msg.contains(f), "{msg:?} lacks {f:?}");
            }
            assert!(msg.contains(&wheel.display().to_string()), "{msg}");
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn members_are_read_and_verified() {
    check(member("fake_pkg/hello.txt", HELLO_SHA), Ok(b"hello"));
    // Upper-case hex pins are accepted.
    check(
        member("fake_pkg/hello.txt", &*HELLO_SHA.to_uppercase().leak()),
        Ok(b"hello"),
    );
    check(
        member("fake_pkg/hello.txt", "00ff"),
        Err(&[
            "sha256 mismatch",
            "'fake_pkg/hello.txt'",
            "fake-pkg==1.0",
            "expected 00ff",
            &format!("actual {HELLO_SHA}"),
            "delete",
        ]),
    );
    check(
        member("fake_pkg/missing.txt", HELLO_SHA),
        Err(&["has no member 'fake_pkg/missing.txt'"]),
    );
}

#[test]
fn corrupt_archive_names_the_file_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join("fake_pkg-1.0-py3-none-any.whl"), b"not a zip").unwrap();
    let e = fetch_member(dir.path(), &member("fake_pkg/hello.txt", HELLO_SHA)).unwrap_err();
    assert!(matches!(e, AssetError::Archive { .. }), "{e}");
    assert!(e.to_string().contains("delete it"), "{e}");
}

#[test]
fn cached_wheels_are_found_by_normalised_name() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = fake_wheel(dir.path(), "Fake_Pkg-1.0-py3-none-any.whl", &[]);
    fake_wheel(dir.path(), "fake_pkg-1.0.1-py3-none-any.whl", &[]);
    fake_wheel(dir.path(), "other-1.0-py3-none-any.whl", &[]);
    let dl = dir.path().join("dl");
    assert_eq!(find_cached_wheel(&dl, "fake.pkg", "1.0"), Some(wheel));
    assert_eq!(find_cached_wheel(&dl, "fake-pkg", "2.0"), None);
    assert_eq!(
        find_cached_wheel(&dir.path().join("absent"), "x", "1"),
        None
    );
}

#[test]
fn cache_dir_prefers_pulse_home() {
    #[track_caller]
    fn check(pulse_home: Option<&str>, home: Option<&str>, want: &str) {
        let got = cache_dir_from(pulse_home.map(Into::into), home.map(Into::into));
        assert_eq!(got, PathBuf::from(want));
    }
    check(Some("/p"), Some("/h"), "/p");
    check(Some(""), Some("/h"), "/h/.cache/pulse");
    check(None, Some("/h"), "/h/.cache/pulse");
    check(None, None, ".pulse");
}

/// Real download: three threads fetch the same member into an empty cache at once; the lock
/// must make them share one download and leave exactly one archive and no temporary files.
#[test]
fn real_fetch_from_the_registry() {
    let home = tempfile::tempdir().unwrap();
    let m = PipMember {
        package: "recbole",
        version: "1.2.1",
        member: "recbole/dataset_example/ml-100k/ml-100k.inter",
        sha256: "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| fetch_member(home.path(), &m)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        let bytes = r.as_ref().unwrap();
        assert_eq!(bytes.len(), 1_979_230);
        assert!(bytes.starts_with(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"));
    }
    let mut left: Vec<String> = std::fs::read_dir(home.path().join("dl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["recbole-1.2.1-py3-none-any.whl"]);
    // A second fetch is served from the cache.
    assert_eq!(
        fetch_member(home.path(), &m).unwrap(),
        *results[0].as_ref().unwrap()
    );
}

mod catalog {
    use super::*;

    const PARTS: &[PipMember] = &[
        PipMember {
            package: "fake-pkg",
            version: "1.0",
            member: "fake_pkg/a.bin",
            sha256: "",
        },
        PipMember {
            package: "fake-pkg",
            version: "1.0",
            member: "fake_pkg/b.bin",
            sha256: "",
        },
    ];

    fn asset(parts: &'static [PipMember], sha256: &'static str) -> NamedAsset {
        let files: &'static [AssetFile] = Vec::leak(vec![AssetFile {
            name: "sub/joined.bin",
            parts,
            sha256,
            size: 5,
        }]);
        NamedAsset {
            name: "fake-asset",
            kind: AssetKind::Dataset,
            about: "test",
            license: "none",
            files,
        }
    }

    /// Pins `hel` + `lo` with their real hashes, optionally spoiling one.
    fn parts(spoil_part: bool) -> &'static [PipMember] {
        let a = if spoil_part {
            "00".to_string()
        } else {
            sha256_hex(b"hel")
        };
        Vec::leak(vec![
            PipMember {
                sha256: String::leak(a),
                ..PARTS[0]
            },
            PipMember {
                sha256: String::leak(sha256_hex(b"lo")),
                ..PARTS[1]
            },
        ])
    }

    /// Assembles the test asset from a cache with one fake wheel holding `hel` and `lo`, and
    /// compares: `Ok(())` when `hello` lands in place, or the fragments of the error message.
    #[track_caller]
    fn check(asset: NamedAsset, expected: Result<(), &[&str]>) {
        let dir = tempfile::tempdir().unwrap();
        fake_wheel(
            dir.path(),
            "fake_pkg-1.0-py3-none-any.whl",
            &[("fake_pkg/a.bin", b"hel"), ("fake_pkg/b.bin", b"lo")],
        );
        let file = &asset.files[0];
        match (fetch_file(dir.path(), &asset, file), expected) {
            (Ok(path), Ok(())) => {
                assert_eq!(path, dir.path().join("assets/fake-asset/sub/joined.bin"));
                assert_eq!(std::fs::read(&path).unwrap(), b"hello");
                assert_eq!(
                    verify_file(dir.path(), &asset, file).unwrap(),
                    FileState::Verified
                );
                // A damaged copy is reported, not silently used by verify.
                std::fs::write(&path, b"jello").unwrap();
                assert!(matches!(
                    verify_file(dir.path(), &asset, file).unwrap(),
                    FileState::Corrupt { size: 5, .. }
                ));
            }
            (Err(e), Err(fragments)) => {
                let msg = e.to_string();
                for f in fragments {
                    assert!(msg.contains(f), "{msg:?} lacks {f:?}");
                }
                assert_eq!(
                    verify_file(dir.path(), &asset, file).unwrap(),
                    FileState::Missing
                );
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
        // Nothing temporary is left behind, whatever happened.
        let sub = dir.path().join("assets/fake-asset/sub");
        if let Ok(entries) = std::fs::read_dir(&sub) {
            for e in entries {
                let name = e.unwrap().file_name().into_string().unwrap();
                assert!(
                    !name.starts_with(".tmp-") && !name.ends_with(".lock"),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn parts_are_joined_and_verified() {
        let hello = String::leak(sha256_hex(b"hello"));
        check(asset(parts(false), hello), Ok(()));
        check(
            asset(parts(true), hello),
            Err(&["sha256 mismatch for 'fake_pkg/a.bin'", "expected 00"]),
        );
        check(
            asset(parts(false), "00"),
            Err(&["the 2 part(s) of 'sub/joined.bin'", "not 00"]),
        );
    }

    #[test]
    fn the_catalog_is_consistent() {
        let names: Vec<_> = named_assets().iter().map(|a| a.name).collect();
        for want in [
            "smollm2-135m-instruct",
            "gemma3-270m",
            "qwen2.5-coder-0.5b-instruct",
            "all-minilm-l6-v2",
            "ml-100k",
            "ml-1m",
            "ml-100k-titles",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for a in named_assets() {
            assert!(!a.files.is_empty(), "{}", a.name);
            for f in a.files {
                assert_eq!(f.sha256.len(), 64, "{}/{}", a.name, f.name);
                for p in f.parts {
                    assert_eq!(p.sha256.len(), 64, "{}/{}", a.name, p.member);
                }
                if f.parts.len() == 1 {
                    assert_eq!(f.sha256, f.parts[0].sha256, "{}/{}", a.name, f.name);
                }
            }
        }
        assert_eq!(
            named_asset("qwen2.5-coder-0.5b-instruct")
                .unwrap()
                .requirements()
                .len(),
            6
        );
        let e = named_asset("gpt-5").unwrap_err().to_string();
        assert!(
            e.contains("unknown asset 'gpt-5'") && e.contains("smollm2-135m-instruct"),
            "{e}"
        );
    }

    /// The real multi-part model: four wheels, joined and checked. Skipped quickly when the
    /// wheels are not cached under `$PULSE_HOME` (it is a 250 MB download).
    #[test]
    fn real_gemma_join() {
        let cache = cache_dir();
        let asset = named_asset("gemma3-270m").unwrap();
        let all_cached = asset.files[0]
            .parts
            .iter()
            .all(|p| find_cached_wheel(&cache.join("dl"), p.package, p.version).is_some());
        if !all_cached {
            eprintln!(
                "gemma3-270m wheels not cached under {}; skipped",
                cache.display()
            );
            return;
        }
        let path = fetch_file(&cache, asset, &asset.files[0]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 253_113_024);
        assert_eq!(
            verify_file(&cache, asset, &asset.files[0]).unwrap(),
            FileState::Verified
        );
    }
}
