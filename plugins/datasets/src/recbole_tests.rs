//! Tests of the `recbole-atomic` plugin: configuration checks, local directories written here in
//! RecBole's format, and the built-in sources fetched for real.

use super::*;
use crate::test_support::{column_f64, column_str, decode_json, names, test_home};
use pulse_api::config::ConfigError;

#[track_caller]
fn check_config(json: &str, expected: Result<RecboleAtomicConfig, &[&str]>) {
    let got = decode_json::<RecboleAtomicConfig>(json);
    match (got, expected) {
        (Ok(cfg), Ok(want)) => assert_eq!(cfg, want),
        (Err(errors), Err(fragments)) => {
            let msg = errors
                .iter()
                .map(ConfigError::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            for f in fragments {
                assert!(msg.contains(f), "{msg:?} lacks {f:?}");
            }
        }
        (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn configs_name_exactly_one_source() {
    let d = RecboleAtomicConfig::default();
    check_config(r#"{"source": "ml-100k"}"#, Ok(d.clone()));
    check_config(
        r#"{"path": "data/x", "time_field": "ts"}"#,
        Ok(RecboleAtomicConfig {
            source: None,
            path: Some("data/x".into()),
            time_field: "ts".into(),
            ..d.clone()
        }),
    );
    check_config(
        r#"{}"#,
        Err(&["name the data", "ml-100k, ml-1m, ml-100k-titles"]),
    );
    check_config(
        r#"{"source": "ml-1m", "path": "x"}"#,
        Err(&["path: set either `source` or `path`, not both"]),
    );
    check_config(
        r#"{"source": "ml-20m"}"#,
        Err(&["source: invalid value 'ml-20m': expected a built-in source, one of ml-100k, ml-1m, ml-100k-titles"]),
    );
    check_config(r#"{"path": " "}"#, Err(&["path: invalid value"]));
    check_config(
        r#"{"source": "ml-1m", "user_field": "id", "item_field": "id"}"#,
        Err(&["item_field: user_field and item_field must name different columns"]),
    );
    check_config(
        r#"{"source": "ml-1m", "rating_field": ""}"#,
        Err(&["rating_field: invalid value"]),
    );
    check_config(
        r#"{"source": "ml-1m", "sorce": 1}"#,
        Err(&["unknown field 'sorce'"]),
    );
}

/// Writes `files` (name, content) into `root/dir/` and loads that directory.
fn load_dir(
    dir: &str,
    files: &[(&str, &str)],
    cfg: RecboleAtomicConfig,
) -> (tempfile::TempDir, Result<RawDataset, PluginError>) {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for (name, content) in files {
        std::fs::write(d.join(name), content).unwrap();
    }
    let ctx = LoadContext {
        cache_dir: root.path().join("cache"),
        base_dir: root.path().to_path_buf(),
        seed: 0,
    };
    let cfg = RecboleAtomicConfig {
        source: None,
        path: Some(dir.into()),
        ..cfg
    };
    let r = RecboleAtomic { cfg }.load(&ctx);
    (root, r)
}

const INTER: &str = "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n\
u2\t\"Wag, the Dog\" (1997)\t4\t881250950\r\n\
u1\tB\t3\t881250949\r\n\
u2\tB\t5\t5\r\n";
const ITEM: &str = "item_id:token\ttitle:token_seq\tyear:float\tgenre:token_seq\n\
B\tThe  B\t1990\tDrama Comedy\n\
\"Wag, the Dog\" (1997)\tWag, the \"Dog\"\t1997\tComedy\n";
const USER: &str = "age:token\tuser_id:token\n30\tu1\n";

#[test]
fn local_directories_load_in_file_order() {
    let (_root, r) = load_dir(
        "mini",
        &[
            ("mini.inter", INTER),
            ("mini.item", ITEM),
            ("mini.user", USER),
        ],
        RecboleAtomicConfig::default(),
    );
    let raw = r.unwrap();
    assert_eq!(raw.name, "mini");
    let i = &raw.interactions;
    assert_eq!(column_str(i, "user"), ["u2", "u1", "u2"]);
    assert_eq!(column_str(i, "item"), ["\"Wag, the Dog\" (1997)", "B", "B"]);
    assert_eq!(column_f64(i, "timestamp"), [881250950.0, 881250949.0, 5.0]);
    assert_eq!(column_f64(i, "rating"), [4.0, 3.0, 5.0]);
    let items = raw.items.unwrap();
    assert_eq!(names(&items), ["item", "title", "year", "genre"]);
    assert_eq!(column_str(&items, "title"), ["The B", "Wag, the \"Dog\""]);
    assert_eq!(column_str(&items, "year"), ["1990", "1997"]);
    let users = raw.users.unwrap();
    assert_eq!(names(&users), ["user", "age"]);
    assert_eq!(column_str(&users, "user"), ["u1"]);
}

#[test]
fn optional_columns_and_custom_names() {
    let inter = "uid:token\tiid:token\n1\t2\n";
    let (_root, r) = load_dir(
        "x",
        &[("other.inter", inter)],
        RecboleAtomicConfig {
            user_field: "uid".into(),
            item_field: "iid".into(),
            ..RecboleAtomicConfig::default()
        },
    );
    let raw = r.unwrap();
    // The only .inter file names the data set when none is named after the directory.
    assert_eq!(raw.name, "other");
    assert_eq!(names(&raw.interactions), ["user", "item"]);
    assert!(raw.items.is_none() && raw.users.is_none());
}

#[test]
fn path_may_name_the_inter_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("ml.inter"), INTER).unwrap();
    std::fs::write(root.path().join("ml.item"), ITEM).unwrap();
    let ctx = LoadContext {
        cache_dir: root.path().join("cache"),
        base_dir: root.path().to_path_buf(),
        seed: 0,
    };
    let cfg = RecboleAtomicConfig {
        source: None,
        path: Some("ml.inter".into()),
        ..RecboleAtomicConfig::default()
    };
    let raw = RecboleAtomic { cfg }.load(&ctx).unwrap();
    assert_eq!(raw.name, "ml");
    assert_eq!(raw.interactions.height(), 3);
    assert_eq!(raw.items.map(|t| t.height()), Some(2));
}

#[track_caller]
fn check_load_error(files: &[(&str, &str)], fragments: &[&str]) {
    let (_root, r) = load_dir("d", files, RecboleAtomicConfig::default());
    let msg = r.unwrap_err().to_string();
    for f in fragments {
        assert!(msg.contains(f), "{msg:?} lacks {f:?}");
    }
}

#[test]
fn load_errors_point_at_the_problem() {
    check_load_error(&[], &["no .inter file"]);
    check_load_error(
        &[("a.inter", INTER), ("b.inter", INTER)],
        &["several .inter files (a.inter, b.inter)"],
    );
    check_load_error(
        &[("d.inter", "user_id:token\titem_id:token\n1\t2\n3\n")],
        &["d.inter:3: expected 2 tab-separated fields as in the header, found 1"],
    );
    check_load_error(
        &[("d.inter", "user:token\titem_id:token\n")],
        &["d.inter:1: no column 'user_id' (set `user_field` to one of: user:token, item_id:token)"],
    );
    check_load_error(
        &[(
            "d.inter",
            "user_id:token\titem_id:token\ttimestamp:token\n1\t2\t3\n",
        )],
        &["column 'timestamp' has type token; expected float"],
    );
    check_load_error(
        &[
            ("d.inter", "user_id:token\titem_id:token\n1\t2\n"),
            ("d.item", "id:token\n1\n"),
        ],
        &["d.item:1: no column 'item_id' (set `item_field`"],
    );
    check_load_error(
        &[
            ("d.inter", "user_id:token\titem_id:token\n1\t2\n"),
            ("d.item", "item_id:token\titem:token\n1\tx\n"),
        ],
        &["column 'item' clashes"],
    );
}

/// Loads a built-in source for real into the shared test cache.
fn load_source(name: &str) -> RawDataset {
    let ctx = LoadContext {
        cache_dir: test_home(),
        base_dir: PathBuf::from("."),
        seed: 0,
    };
    let cfg = RecboleAtomicConfig {
        source: Some(name.into()),
        ..RecboleAtomicConfig::default()
    };
    let ds = build(cfg).unwrap();
    assert!(ds.describe().contains(name));
    ds.load(&ctx).unwrap()
}

/// `(rows of interactions, rows of items, item columns, rows of users, first user, first item)`
#[track_caller]
fn check_source(name: &str, expected: (usize, usize, &[&str], usize, &str, &str)) {
    let raw = load_source(name);
    let i = &raw.interactions;
    let items = raw.items.as_ref().unwrap();
    let users = raw.users.as_ref().unwrap();
    let first = (
        column_str(i, "user").remove(0),
        column_str(i, "item").remove(0),
    );
    let got = (
        i.height(),
        items.height(),
        names(items),
        users.height(),
        first,
    );
    let (a, b, c, d, e, f) = expected;
    let c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, (a, b, c, d, (e.to_string(), f.to_string())));
    assert_eq!(names(i), ["user", "item", "timestamp", "rating"]);
}

#[test]
fn built_in_sources_load() {
    check_source(
        "ml-100k",
        (
            100_000,
            1_682,
            &["item", "movie_title", "release_year", "class"],
            943,
            "196",
            "242",
        ),
    );
    check_source(
        "ml-100k-titles",
        (
            100_000,
            1_682,
            &["item", "movie_title", "release_year", "class"],
            943,
            "100k_196",
            "Kolya (1996)",
        ),
    );
    check_source(
        "ml-1m",
        (
            1_000_209,
            3_883,
            &["item", "movie_title", "release_year", "genre"],
            6_040,
            "1m_1",
            "One Flew Over the Cuckoo's Nest (1975)",
        ),
    );
}
