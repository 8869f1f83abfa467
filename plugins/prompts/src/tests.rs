//! Rendering and field checks of the built-in and user templates, on ml-100k-shaped items.

use super::*;
use pulse_api::{PromptContext, PromptItem};

fn movie(id: &str, title: &str, year: &str, genres: &str) -> PromptItem {
    PromptItem {
        id: id.into(),
        fields: [
            ("movie_title", title),
            ("release_year", year),
            ("class", genres),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

fn ml_fields() -> Vec<String> {
    ["movie_title", "release_year", "class"]
        .map(String::from)
        .to_vec()
}

fn ctx() -> PromptContext {
    PromptContext {
        domain: "ml-100k".into(),
        history: vec![
            movie("1", "Toy Story", "1995", "Animation Children's Comedy"),
            movie("2", "GoldenEye", "1995", "Action Adventure Thriller"),
        ],
        item: movie(
            "50",
            "Star Wars",
            "1977",
            "Action Adventure Romance Sci-Fi War",
        ),
        n_history: 7,
    }
}

fn template(text: &str) -> TemplatePrompt {
    TemplatePrompt {
        text: Some(text.into()),
        ..TemplatePrompt::default()
    }
}

/// Renders `prompt` and compares the user message (or the error) with `expected`.
#[track_caller]
fn check(prompt: &dyn Prompt, expected: Result<&str, &str>) {
    let compiled = prompt.compile(Path::new(".")).unwrap();
    let fields = compiled.check_fields(&ml_fields());
    match (fields, expected) {
        (Ok(()), Ok(want)) => {
            let turns = compiled.render(&ctx()).unwrap();
            let user = &turns.iter().rfind(|t| t.role == "user").unwrap().content;
            assert_eq!(user, want);
        }
        (Err(got), Err(want)) => assert!(got.to_string().contains(want), "{got} lacks {want}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn templates_render_items_with_aliases_and_labels() {
    check(
        &template("{% for it in history %}{{ it.title }} ({{ it.year }}); {% endfor %}-> {{ item.label }}"),
        Ok("Toy Story (1995); GoldenEye (1995); -> Star Wars (1977) — Action Adventure Romance Sci-Fi War"),
    );
    check(
        &template("{{ domain }}: {{ n_history }} items, shown {{ history|length }}; {{ item.movie_title }} {{ item.id }}"),
        Ok("ml-100k: 7 items, shown 2; Star Wars 50"),
    );
    check(
        &template("{% if item.rating is defined %}{{ item.rating }}{% else %}no rating{% endif %}"),
        Ok("no rating"),
    );
}

#[test]
fn missing_variables_are_reported_with_their_line() {
    check(
        &template("Line one\n{% for it in history %}{{ it.rating }}{% endfor %}"),
        Err("text (template line 2): undefined value"),
    );
    check(
        &template("{{ user_age }}"),
        Err("top-level variables: domain"),
    );
    let e = template("{% for x in %}")
        .compile(Path::new("."))
        .err()
        .unwrap();
    assert_eq!((e.key.as_str(), e.line), ("text", Some(1)), "{e}");
}

#[test]
fn template_files_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("why.j2"), "ok\n\n{{ item.director }}").unwrap();
    let p = TemplatePrompt {
        file: Some("why.j2".into()),
        ..TemplatePrompt::default()
    };
    let e = p
        .compile(dir.path())
        .unwrap()
        .check_fields(&ml_fields())
        .unwrap_err();
    assert_eq!(e.key, "file");
    assert_eq!(e.file.as_deref(), Some(dir.path().join("why.j2").as_path()));
    assert_eq!(e.line, Some(3));
}

#[test]
fn builtin_rationale_prompt_fits_any_data_set() {
    let p = RationalePrompt::default();
    let c = p.compile(Path::new(".")).unwrap();
    c.check_fields(&ml_fields()).unwrap();
    c.check_fields(&[]).unwrap();
    let turns = c.render(&ctx()).unwrap();
    assert_eq!(turns[0].role, "system");
    let user = &turns[1].content;
    assert!(user.starts_with("A user of a ml-100k service interacted with these items, oldest first (the last 2 of 7):\nToy Story (1995) — Animation Children's Comedy; GoldenEye (1995) — Action Adventure Thriller; \n\nNext, the user chose: Star Wars (1977)"), "{user}");
    assert!(
        user.ends_with(r#"{"rationale": "<why the user chose this item, under 100 words>"}"#),
        "{user}"
    );
    assert_eq!(turns.len(), 3);
    assert_eq!(
        (turns[2].role.as_str(), turns[2].content.as_str()),
        ("assistant", RATIONALE_PREFILL)
    );
    let plain = RationalePrompt {
        prefill: false,
        ..p.clone()
    }
    .compile(Path::new("."))
    .unwrap();
    assert_eq!(plain.render(&ctx()).unwrap().len(), 2);
    assert_ne!(plain.source_hash(), c.source_hash());
    // The hash follows the settings that change the text.
    let other = RationalePrompt {
        history_len: 5,
        ..p.clone()
    };
    assert_ne!(
        c.source_hash(),
        other.compile(Path::new(".")).unwrap().source_hash()
    );
    assert_eq!(
        c.source_hash(),
        p.compile(Path::new(".")).unwrap().source_hash()
    );
}

#[test]
fn examples_decode_to_defaults_and_configs_are_checked() {
    let v: toml::Value = toml::from_str(RationalePrompt::EXAMPLE).unwrap();
    let got: RationalePrompt = pulse_api::decode(&serde_json::to_value(v).unwrap()).unwrap();
    assert_eq!(got, RationalePrompt::default());
    let v: toml::Value = toml::from_str(TemplatePrompt::EXAMPLE).unwrap();
    let got: TemplatePrompt = pulse_api::decode(&serde_json::to_value(v).unwrap()).unwrap();
    // Every other key of the example is commented out at its default.
    assert_eq!(
        got,
        template("The user watched {% for it in history %}{{ it.title }}; {% endfor %}then {{ item.title }}. Why?")
    );
    let problems =
        |t: TemplatePrompt| -> Vec<String> { t.validate().iter().map(|e| e.to_string()).collect() };
    assert_eq!(
        problems(TemplatePrompt::default()),
        ["text: missing: give text = \"…\" (an inline template) or file = \"…\""]
    );
    assert_eq!(
        problems(TemplatePrompt {
            file: Some("a".into()),
            ..template("b")
        }),
        ["file: give either text or file, not both"]
    );
    assert!(problems(template("x")).is_empty());
}
