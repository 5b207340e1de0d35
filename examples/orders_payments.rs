//! Orders joined with their payments within 10 minutes (a windowed stream-stream left join):
//! each paid order once per payment, and each order still unpaid when its window closed, with
//! no payment. Both topics are keyed by order id.
//!
//! Run: `cargo run -p logbrook-examples --example orders_payments`

use std::time::Duration;

use anyhow::Result;
use logbrook_examples::{Example, at, clock};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{JoinWindows, Produced, StreamsBuilder};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    customer: String,
    amount: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Payment {
    method: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let builder = StreamsBuilder::new();
    let orders = builder.stream_with::<String, Order>("orders", Str, Json::new());
    let payments = builder.stream_with::<String, Payment>("payments", Str, Json::new());
    orders
        .left_join(
            &payments,
            |id, order, payment| match payment {
                Some(p) => format!(
                    "{id} {} paid {} by {}",
                    order.customer, order.amount, p.method
                ),
                None => format!(
                    "{id} {} UNPAID {} after 10 minutes",
                    order.customer, order.amount
                ),
            },
            JoinWindows::of(Duration::from_secs(600)).grace(Duration::from_secs(60)),
            "orders-payments",
        )
        .to_with("order-status", Produced::with(Str, Str));

    let example = Example::start(&[("orders", 1), ("payments", 1), ("order-status", 1)]).await?;
    let order = |customer: &str, amount: u64| json!({ "customer": customer, "amount": amount });
    example
        .send("orders", "o-1", &order("ann", 30), at(0, 0))
        .await?;
    example
        .send("orders", "o-2", &order("bob", 12), at(1, 0))
        .await?;
    example
        .send("payments", "o-1", &json!({ "method": "card" }), at(2, 0))
        .await?;
    example
        .send("orders", "o-3", &order("cid", 99), at(3, 0))
        .await?;
    example
        .send("payments", "o-3", &json!({ "method": "iban" }), at(20, 0))
        .await?; // too late
    example
        .send("orders", "o-4", &order("dee", 5), at(40, 0))
        .await?; // moves stream time on
    example.run("orders-payments", builder.build()?).await?;

    println!("order status:");
    let mut rows: Vec<_> = example.read("order-status")?;
    rows.sort_by_key(|r| r.timestamp);
    for record in rows {
        println!(
            "  {} {}",
            clock(record.timestamp),
            record.value.unwrap_or_default()
        );
    }
    example.finish().await
}
