//! Bad connector and worker files are rejected before anything runs, naming the file and key.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;
use common::connect::connector_file;

const GOOD: &str =
    "name = \"in\"\nconnector = \"file-source\"\ntopic = \"t\"\npath = \"/tmp/x.log\"\n";

#[test]
fn each_kind_of_bad_config_names_the_file_and_key_and_nothing_runs() {
    let lb = Logbrook::new();
    // A file where the sink would need a directory.
    let blocker = lb.root().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let cases = [
        (
            "unknown.toml",
            format!("{GOOD}pathh = \"y\"\n"),
            "key `pathh`",
            "unknown field",
        ),
        (
            "type.toml",
            format!("{GOOD}tasks = \"two\"\n"),
            "key `tasks`",
            "invalid type",
        ),
        (
            "missing.toml",
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"t\"\n".to_string(),
            "key `.`",
            "missing field `path`",
        ),
        (
            "value.toml",
            format!("{GOOD}format = \"xml\"\n"),
            "key `format`",
            "unknown variant",
        ),
        (
            "tolerance.toml",
            format!("{GOOD}[errors]\ntolerance = \"some\"\n"),
            "key `errors.tolerance`",
            "unknown variant",
        ),
        (
            "transform.toml",
            format!("{GOOD}[[transforms]]\ntype = \"route\"\nregex = \"(\"\nreplacement = \"x\"\n"),
            "key `transforms[0].regex`",
            "regex",
        ),
        (
            "plugin.toml",
            GOOD.replace("file-source", "ftp-source"),
            "key `connector`",
            "file-source",
        ),
        (
            "sink-path.toml",
            format!(
                "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"t\"]\npath = \"{}/{{topic}}/out.jsonl\"\n",
                blocker.display()
            ),
            "key `path`",
            "blocker is a file",
        ),
        (
            "syntax.toml",
            "name = \n".to_string(),
            "key `.`",
            "invalid TOML",
        ),
        (
            "secret.toml",
            format!("{GOOD}poll_interval_ms = \"${{env:LOGBROOK_TEST_NOT_SET}}\"\n"),
            "key `poll_interval_ms`",
            "LOGBROOK_TEST_NOT_SET",
        ),
    ];
    for (file, text, key, why) in cases {
        let path = connector_file(&lb, file, &text);
        let path_arg = path.display().to_string();
        for command in [
            &["connect", "validate", &path_arg][..],
            &["connect", "run", "--rest-listen", "127.0.0.1:0", &path_arg][..],
        ] {
            let stderr = lb.fails(command);
            assert!(stderr.contains(&path_arg), "{file}: {stderr}");
            assert!(stderr.contains(key), "{file}: expected {key} in {stderr}");
            assert!(stderr.contains(why), "{file}: expected {why:?} in {stderr}");
        }
    }
    assert!(
        !lb.data_dir().exists(),
        "a rejected config must not open the log"
    );
}

#[test]
fn secrets_from_files_are_used_but_never_printed() {
    let lb = Logbrook::new();
    let secret = lb.root().join("interval");
    std::fs::write(&secret, "not-a-number-s3cret\n").unwrap();
    let path = connector_file(
        &lb,
        "c.toml",
        &format!(
            "{GOOD}poll_interval_ms = \"${{file:{}}}\"\n",
            secret.display()
        ),
    );
    let stderr = lb.fails(&["connect", "validate", path.to_str().unwrap()]);
    assert!(stderr.contains("poll_interval_ms"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "secret leaked: {stderr}");
}

#[test]
fn validate_accepts_a_good_file_and_duplicate_names_are_rejected() {
    let lb = Logbrook::new();
    let a = connector_file(&lb, "a.toml", GOOD);
    let b = connector_file(&lb, "b.toml", GOOD);
    let out = lb.ok(&["connect", "validate", a.to_str().unwrap()]);
    assert!(out.contains("ok (file-source \"in\""), "{out}");
    let stderr = lb.fails(&[
        "connect",
        "validate",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(stderr.contains("also defined in"), "{stderr}");
    let plugins = lb.ok(&["connect", "plugins"]);
    assert!(
        plugins.contains("file-source") && plugins.contains("file-sink"),
        "{plugins}"
    );
}

#[test]
fn a_bad_worker_file_names_its_key() {
    let lb = Logbrook::new();
    let worker = connector_file(&lb, "worker.toml", "rest_listen = \"nowhere\"\n");
    let stderr = lb.fails(&["connect", "run", "--worker", worker.to_str().unwrap()]);
    assert!(
        stderr.contains("worker.toml: key `rest_listen`"),
        "{stderr}"
    );
}

#[test]
fn the_example_connector_files_are_valid() {
    let lb = Logbrook::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/connect");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("worker.toml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["connect", "validate"];
    args.extend(files.iter().map(String::as_str));
    // Secrets come from the environment; validation needs them set, not reachable.
    let run: common::Run = lb
        .command(&args)
        .env("LOGBROOK_PG_URL", "postgres://app@db.example:5432/shop")
        .env("LOGBROOK_S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("LOGBROOK_S3_SECRET_ACCESS_KEY", "example-secret")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, Some(0), "{run:?}");
    let out = run.stdout;
    assert_eq!(out.lines().count(), files.len(), "{out}");
}
