//! Stream-table joins, through the test driver.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Produced, StreamsBuilder, TopologyTestDriver};

fn bytes(s: &str) -> Option<bytes::Bytes> {
    Some(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn orders_are_enriched_from_the_customers_table_as_it_is_at_each_order() {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table_with::<String, String>("customers", "customers-store", Str, Json::new());
    let orders = builder.stream_with::<String, u64>("orders", Str, Json::new());
    orders
        .join_table(&customers, |_, amount, name| {
            format!("{name} ordered {amount}")
        })
        .to_with("enriched", Produced::with(Str, Str));
    orders
        .left_join_table(&customers, |id, amount, name| {
            format!(
                "{} ordered {amount}",
                name.unwrap_or_else(|| format!("unknown {id}"))
            )
        })
        .to_with("enriched-all", Produced::with(Str, Str));
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();

    driver
        .pipe_raw("orders", bytes("c1"), bytes("10"), 1)
        .unwrap(); // before the customer exists
    driver
        .pipe_raw("customers", bytes("c1"), bytes("\"Ann\""), 2)
        .unwrap();
    driver
        .pipe_raw("orders", bytes("c1"), bytes("20"), 3)
        .unwrap();
    driver
        .pipe_raw("customers", bytes("c1"), bytes("\"Ann B.\""), 4)
        .unwrap(); // renamed
    driver
        .pipe_raw("orders", bytes("c1"), bytes("30"), 5)
        .unwrap();
    driver.pipe_raw("customers", bytes("c1"), None, 6).unwrap(); // deleted
    driver
        .pipe_raw("orders", bytes("c1"), bytes("40"), 7)
        .unwrap();

    let read = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<String> {
        let out = driver.output_topic::<String, String>(topic, Str, Str);
        driver
            .read_all(&out)
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    assert_eq!(
        read(&mut driver, "enriched"),
        vec!["Ann ordered 20", "Ann B. ordered 30"]
    );
    assert_eq!(
        read(&mut driver, "enriched-all"),
        vec![
            "unknown c1 ordered 10",
            "Ann ordered 20",
            "Ann B. ordered 30",
            "unknown c1 ordered 40"
        ]
    );
}

#[test]
fn a_re_keyed_stream_is_repartitioned_before_a_table_join() {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table_with::<String, String>("customers", "customers-store", Str, Json::new());
    // Orders keyed by order id, carrying the customer id: re-keyed to the customer.
    builder
        .stream_with::<String, String>("orders", Str, Json::new())
        .select_key(|_, customer| customer.clone())
        .join_table(&customers, |customer, _, name| {
            format!("{customer} is {name}")
        })
        .to_with("enriched", Produced::with(Str, Str));
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    driver
        .pipe_raw("customers", bytes("c7"), bytes("\"Bo\""), 1)
        .unwrap();
    driver
        .pipe_raw("orders", bytes("order-1"), bytes("\"c7\""), 2)
        .unwrap();
    let out = driver.read_raw("enriched");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.as_deref(), Some(&b"c7 is Bo"[..]));
    let internal = topology.internal_topic_names("app");
    assert!(
        internal
            .iter()
            .any(|t| t.starts_with("app-customers-store-join-") && t.ends_with("-repartition")),
        "{internal:?}"
    );
}

#[test]
fn joins_need_materialized_tables() {
    let builder = StreamsBuilder::new();
    let table = builder.table_with::<String, String>("t", "t-store", Str, Str);
    let stream = builder.stream_with::<String, String>("s", Str, Str);
    stream.join_table(&table.filter(|_, _| true), |_, a, b| a + &b);
    table
        .filter(|_, _| true)
        .join(&table, |_, a: String, b: String| a + &b);
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("join_table needs a materialized table"),
        "{err}"
    );
    assert!(
        err.contains("table-table joins need materialized tables"),
        "{err}"
    );
}
