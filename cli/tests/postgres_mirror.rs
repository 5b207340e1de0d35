//! A table mirrored to another database through a topic, as in
//! `examples/connect/mirror-postgres-{source,sink}.toml`: CDC with the row envelope and schemas
//! into an upserting, deleting, table-creating `postgres-sink`. The copy must equal the original,
//! column types included.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;
use common::connect::{Worker, connector_file};
use common::postgres::{self, psql};

fn create_database(name: &str) -> String {
    postgres::create_database(&postgres::server_url(), name)
}

const ROWS: &str = "SELECT * FROM public.orders ORDER BY id";
const TYPES: &str = "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = 'public.orders'::regclass AND attnum > 0 AND NOT attisdropped \
                     ORDER BY attnum";

#[test]
fn a_cdc_source_feeds_a_sink_that_keeps_an_exact_copy_of_the_table() {
    let pid = std::process::id();
    let shop = create_database(&format!("lb_mirror_shop_{pid}"));
    let replica = create_database(&format!("lb_mirror_replica_{pid}"));
    psql(
        &shop,
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), \
         placed timestamptz, day date, tags text[], doc jsonb, paid boolean, raw bytea); \
         INSERT INTO orders SELECT g, 'customer ''' || g || E'\\t', g * 1.25, \
           '2024-05-01 12:00:00.123456+00'::timestamptz + g * interval '1 minute', \
           '2024-05-01'::date + g, ARRAY['a', 'b c', NULL], '{\"n\": 1}', g % 2 = 0, '\\x00ff' \
         FROM generate_series(1, 200) g",
    );
    let lb = Logbrook::new();
    let source = connector_file(
        &lb,
        "mirror-out.toml",
        &format!(
            "name = \"mirror-out\"\nconnector = \"postgres-source\"\nurl = \"{shop}\"\n\
             table = \"public.orders\"\nmode = \"cdc\"\nenvelope = \"row\"\ntopic = \"orders-mirror\"\n\
             slot = \"mirror_{pid}\"\npoll_interval_ms = 50\ndrop_slot_on_delete = true\nmax_slot_wal_mb = 0\n\
             key_converter_schemas_enable = true\nvalue_converter_schemas_enable = true\n"
        ),
    );
    let sink = connector_file(
        &lb,
        "mirror-in.toml",
        &format!(
            "name = \"mirror-in\"\nconnector = \"postgres-sink\"\ntopics = [\"orders-mirror\"]\n\
             url = \"{replica}\"\ntable = \"public.orders\"\nmode = \"upsert\"\nprimary_key = [\"id\"]\n\
             delete_on_tombstone = true\nauto_create = true\nauto_evolve = true\nexactly_once = true\n\
             key_converter_schemas_enable = true\nvalue_converter_schemas_enable = true\n"
        ),
    );
    let worker = Worker::start(&lb, &[&source, &sink]);
    let same = || {
        psql(&replica, "SELECT to_regclass('public.orders') IS NOT NULL") == "t"
            && psql(&replica, ROWS) == psql(&shop, ROWS)
    };
    let wait_for = |what: &str, seconds: u64, same: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while !same() {
            if std::time::Instant::now() > deadline {
                let replica_rows =
                    psql(&replica, "SELECT to_regclass('public.orders') IS NOT NULL");
                let replica_rows = if replica_rows == "t" {
                    psql(&replica, ROWS)
                } else {
                    "no table".into()
                };
                panic!(
                    "timed out waiting for {what}\nreplica:\n{}\nshop:\n{}\nworker:\n{}",
                    replica_rows.lines().take(5).collect::<Vec<_>>().join("\n"),
                    psql(&shop, ROWS)
                        .lines()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    worker.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("the snapshot copied", 60, &same);

    psql(
        &shop,
        "UPDATE orders SET amount = amount + 0.01, tags = '{x}' WHERE id % 10 = 0; \
         DELETE FROM orders WHERE id % 7 = 0; \
         UPDATE orders SET id = 1000 WHERE id = 1; \
         INSERT INTO orders (id, customer, doc) VALUES (2000, 'late \"quoted\"', '[1, {\"k\": null}]')",
    );
    wait_for("the changes copied", 60, &same);
    assert_eq!(psql(&replica, "SELECT count(*) FROM orders"), "173");
    assert_eq!(
        psql(&replica, TYPES),
        "id integer\ncustomer text\namount numeric(10,2)\nplaced timestamp with time zone\n\
         day date\ntags text[]\ndoc jsonb\npaid boolean\nraw bytea",
        "the replica's columns have the original types"
    );
    // Any retained WAL is over a limit of 0 MB: the connector says so.
    assert!(
        worker
            .stderr()
            .contains("the replication slot retains more WAL than max_slot_wal_mb"),
        "{}",
        worker.stderr()
    );
    assert_eq!(worker.stop().code, Some(0));
}
