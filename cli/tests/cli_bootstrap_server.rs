//! The client commands with `--bootstrap-server`: the same commands run on the embedded log and
//! on `logbrook serve` must print the same, so a script can move from one to the other.

mod common;

use common::Logbrook;
use common::serve::Server;
use serde_json::Value;

/// One place the commands run: a data directory, or a server's bootstrap address.
struct Side<'a> {
    lb: &'a Logbrook,
    bootstrap: Option<String>,
}

impl Side<'_> {
    fn args<'b>(&'b self, args: &[&'b str]) -> Vec<&'b str> {
        let mut all = args.to_vec();
        if let Some(bootstrap) = &self.bootstrap {
            all.extend(["--bootstrap-server", bootstrap.as_str()]);
        }
        all
    }

    fn ok(&self, args: &[&str]) -> String {
        self.lb.ok(&self.args(args))
    }

    fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.lb.ok_with_stdin(&self.args(args), stdin)
    }

    fn fails(&self, args: &[&str]) -> String {
        self.lb.fails(&self.args(args))
    }

    /// What `consume ARGS` printed, line by line, sorted: partitions interleave differently
    /// on the two sides.
    fn consumed(&self, args: &[&str]) -> String {
        let mut lines: Vec<String> = self.ok(args).lines().map(str::to_string).collect();
        lines.sort();
        lines.join("\n")
    }

    /// `consume --format json` records without their timestamps (each side stamps its own),
    /// in (partition, offset) order.
    fn records(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["consume", "--format", "json"];
        all.extend_from_slice(args);
        let mut records = self
            .ok(&all)
            .lines()
            .map(|line| {
                let mut record: Value = serde_json::from_str(line).expect("a JSON record");
                record
                    .as_object_mut()
                    .expect("an object")
                    .remove("timestamp")
                    .expect("a timestamp");
                record
            })
            .collect::<Vec<_>>();
        records.sort_by_key(|r| (r["partition"].as_u64(), r["offset"].as_u64()));
        records
    }
}

/// `topic describe` with the BYTES and SEGMENTS columns dropped: only the embedded log knows
/// how it stores a partition (a cluster shows `-`).
fn without_storage_columns(describe: &str) -> String {
    describe
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            if cells.len() == 5 {
                cells[..3].join(" ")
            } else {
                cells.join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every step prints the same on both sides.
fn script(side: &Side<'_>) -> Vec<String> {
    let mut out = vec![side.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--retention-ms",
        "3600000",
        "--segment-bytes",
        "1048576",
        "--flush",
        "interval:250",
    ])];
    out.push(side.ok(&["topic", "create", "audit", "--cleanup-policy", "compact"]));
    out.push(side.ok(&["topic", "list"]));
    out.push(without_storage_columns(
        &side.ok(&["topic", "describe", "orders"]),
    ));
    out.push(without_storage_columns(
        &side.ok(&["topic", "describe", "audit"]),
    ));
    let lines: String = (0..40)
        .map(|i| format!("customer-{}=order {i}\n", i % 7))
        .collect();
    side.ok_with_stdin(
        &[
            "produce",
            "orders",
            "--key-separator",
            "=",
            "--header",
            "source=test",
        ],
        &lines,
    );
    // Keys pick partitions as the Java client does, on both sides.
    out.push(without_storage_columns(
        &side.ok(&["topic", "describe", "orders"]),
    ));
    out.push(format!("{:?}", side.records(&["orders"])));
    out.push(format!(
        "{:?}",
        side.records(&[
            "orders",
            "--partition",
            "1",
            "--from",
            "offset:2",
            "--until",
            "offset:5"
        ])
    ));
    out.push(side.consumed(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--partition",
        "0",
        "--max",
        "4",
    ]));
    out.push(side.ok(&["group", "list"]));
    out.push(side.ok(&["group", "describe", "billing"]));
    // The group goes on from what it committed.
    out.push(side.consumed(&["consume", "orders", "--group", "billing"]));
    out.push(side.ok(&["group", "describe", "billing"]));
    out.push(side.ok(&[
        "group",
        "reset",
        "billing",
        "--topic",
        "orders",
        "--to-offset",
        "3",
        "--dry-run",
    ]));
    out.push(side.ok(&[
        "group",
        "reset",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]));
    out.push(side.ok(&["group", "describe", "billing"]));
    // A streams application's offsets and internal topics, as a reset sees them.
    side.ok(&["consume", "orders", "--group", "app"]);
    side.ok(&["topic", "create", "app-store-changelog"]);
    side.ok(&[
        "topic",
        "create",
        "app-rekey-repartition",
        "--partitions",
        "2",
    ]);
    out.push(side.ok(&["streams", "reset", "app", "--dry-run"]));
    out.push(side.ok(&["streams", "reset", "app"]));
    out.push(side.ok(&["group", "describe", "app"]));
    out.push(side.ok(&["topic", "delete", "audit"]));
    out.push(side.ok(&["topic", "list"]));
    // Errors name the same culprits.
    out.push(last_line(&side.fails(&[
        "consume",
        "orders",
        "--partition",
        "7",
    ])));
    out.push(last_line(&side.fails_with_stdin_line(&[
        "produce",
        "orders",
        "--partition",
        "3",
    ])));
    out
}

impl Side<'_> {
    fn fails_with_stdin_line(&self, args: &[&str]) -> String {
        self.lb.fails_with_stdin(&self.args(args), "x\n")
    }
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().to_string()
}

#[test]
fn every_client_command_prints_the_same_on_a_server_as_on_the_embedded_log() {
    let embedded_dir = Logbrook::new();
    let embedded = script(&Side {
        lb: &embedded_dir,
        bootstrap: None,
    });

    let served_dir = Logbrook::new();
    let server = Server::start(&served_dir);
    let client_dir = Logbrook::new();
    let served = script(&Side {
        lb: &client_dir,
        bootstrap: Some(server.bootstrap.clone()),
    });
    assert!(
        !client_dir.data_dir().exists(),
        "a command with --bootstrap-server touched the data dir"
    );
    for (step, (embedded, served)) in embedded.iter().zip(&served).enumerate() {
        assert_eq!(embedded, served, "step {step} differs");
    }
    assert_eq!(embedded.len(), served.len());
    // The data is in the server's log, not only in its memory.
    let run = server.stop();
    assert_eq!(run.code, Some(0), "serve did not stop cleanly: {run:?}");
    let stored = served_dir.consume_values("orders", &[]);
    assert_eq!(stored.len(), 40);
}

#[test]
fn perf_measures_a_server_and_what_it_wrote_is_there() {
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let cluster = ["--bootstrap-server", server.bootstrap.as_str()];
    let mut produce = vec![
        "perf",
        "produce",
        "--topic",
        "bench",
        "--records",
        "20000",
        "--record-size",
        "200",
        "--partitions",
        "2",
        "--json",
    ];
    produce.extend(cluster);
    let produced: Value = serde_json::from_str(lb.ok(&produce).trim()).expect("JSON");
    assert_eq!(produced["records"], 20000);
    // An acknowledgement over loopback takes more than 10 µs (latencies once all read 2 µs).
    let p50 = produced["latency_ms"]["p50"].as_f64().expect("p50");
    let max = produced["latency_ms"]["max"].as_f64().expect("max");
    assert!(p50 > 0.01 && max >= p50, "{produced}");
    let mut consume = vec!["perf", "consume", "--topic", "bench", "--json"];
    consume.extend(cluster);
    let consumed: Value = serde_json::from_str(lb.ok(&consume).trim()).expect("JSON");
    assert_eq!(consumed["records"], 20000);
    assert_eq!(consumed["bytes"], 20000 * 200);
    let mut describe = vec!["topic", "describe", "bench"];
    describe.extend(cluster);
    let text = lb.ok(&describe);
    assert!(text.contains("partitions           2"), "{text}");
    assert!(text.contains("flush                always"), "{text}");
}

#[test]
fn a_cluster_that_does_not_answer_and_bad_client_flags_are_named() {
    let lb = Logbrook::new();
    // Nothing listens on port 1 of loopback.
    let err = lb.fails(&["topic", "list", "--bootstrap-server", "127.0.0.1:1"]);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    let err = lb.fails(&["topic", "list", "-X", "security.protocol=ssl"]);
    assert!(err.contains("--bootstrap-server"), "{err}");
    let err = lb.fails(&["topic", "list", "-X", "novalue"]);
    assert!(err.contains("novalue"), "{err}");
    // The environment variable works as the flag does.
    let run = lb
        .command(&["group", "list"])
        .env("LOGBROOK_BOOTSTRAP_SERVER", "127.0.0.1:1")
        .output()
        .expect("run logbrook");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("127.0.0.1:1"));
}
