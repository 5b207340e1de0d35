//! Orders enriched from a customers table (a stream-table join): each order meets the
//! customer's row as it is when the order is processed; orders of unknown customers are kept
//! with a placeholder (left join). The `customers` topic is compacted: the latest row per key.
//!
//! Run: `cargo run -p logbrook-examples --example orders_enriched`

use anyhow::Result;
use logbrook_examples::{Example, at};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Produced, StreamsBuilder, Topology};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Serialize, Deserialize)]
struct Customer {
    name: String,
    tier: String,
}

fn topology() -> Result<Topology> {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table_with::<String, Customer>("customers", "customers-store", Str, Json::new());
    builder
        .stream_with::<String, u64>("orders", Str, Json::new()) // key: customer id
        .left_join_table(&customers, |id, amount, customer| match customer {
            Some(c) => format!("{} ({} tier) ordered {amount}", c.name, c.tier),
            None => format!("unknown customer {id} ordered {amount}"),
        })
        .to_with("orders-enriched", Produced::with(Str, Str));
    Ok(builder.build()?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let example =
        Example::start(&[("customers", 2), ("orders", 2), ("orders-enriched", 2)]).await?;
    example
        .send(
            "customers",
            "c-1",
            &json!({ "name": "Ann", "tier": "gold" }),
            at(0, 0),
        )
        .await?;
    example
        .send(
            "customers",
            "c-2",
            &json!({ "name": "Bob", "tier": "basic" }),
            at(0, 0),
        )
        .await?;
    // Load the table, then run again on the orders: each run goes on from the offsets the last
    // one committed. (Within a run a task reads its partitions in timestamp order, so customers
    // written before an order are joined with it either way.)
    example.run("orders-enriched", topology()?).await?;
    example.send("orders", "c-1", &json!(40), at(1, 0)).await?;
    example.send("orders", "c-2", &json!(15), at(2, 0)).await?;
    example.send("orders", "c-9", &json!(7), at(3, 0)).await?;
    example.run("orders-enriched", topology()?).await?;
    // Bob moves to gold: later orders see the new row, earlier results stay as they were.
    example
        .send(
            "customers",
            "c-2",
            &json!({ "name": "Bob", "tier": "gold" }),
            at(4, 0),
        )
        .await?;
    example.run("orders-enriched", topology()?).await?;
    example.send("orders", "c-2", &json!(60), at(5, 0)).await?;
    example.run("orders-enriched", topology()?).await?;

    println!("orders enriched with the customer as it was at each order:");
    let mut rows = example.read("orders-enriched")?;
    rows.sort_by_key(|r| r.timestamp);
    for record in rows {
        println!("  {}", record.value.unwrap_or_default());
    }
    example.finish().await
}
