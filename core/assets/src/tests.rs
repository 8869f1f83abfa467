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
