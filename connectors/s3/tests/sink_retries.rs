//! `s3-sink` through a proxy that throttles, fails and resets connections: every record
//! arrives exactly once, large objects by multipart upload.

mod common;

use common::proxy::{Fault, FaultProxy};
use common::{TestBucket, endpoint, offsets_of, open_sink};
use logbrook_connect::Record;
use serde_json::json;

#[tokio::test]
async fn uploads_survive_throttling_server_errors_and_resets() {
    let bucket = TestBucket::new("retry-faults").await;
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![
            Fault::Pass, // HEAD bucket at open
            Fault::SlowDown,
            Fault::Pass,
            Fault::InternalError,
            Fault::Pass,
        ],
        // Inside the first upload and inside a later part: ~32 MB cross both.
        vec![300_000, 2_000_000],
    )
    .await;
    let config = bucket.sink_config_via(
        &proxy.endpoint,
        json!({"flush_bytes": 12 << 20, "part_bytes": 5 << 20, "max_concurrent_uploads": 4}),
    );
    let mut sink = open_sink(config, &["big"]).await;
    let filler = "x".repeat(2000);
    let batch: Vec<Record> = (0..16_000u64)
        .map(|offset| Record {
            value: Some(json!({"id": offset, "filler": filler})),
            ..common::record("big", 0, offset)
        })
        .collect();
    for chunk in batch.chunks(1000) {
        let rejected = sink.put(chunk).await.expect("put");
        assert!(rejected.is_empty());
    }
    // On a loaded machine the uploads may outlast one close; the runtime then closes again.
    let mut closes = 0;
    loop {
        closes += 1;
        match sink.close().await {
            Ok(()) => break,
            Err(e) if e.is_retriable() && closes < 5 => eprintln!("close {closes}: {e}"),
            Err(e) => panic!("close {closes}: {e:?}"),
        }
    }
    assert!(
        proxy.faults() >= 4,
        "only {} faults injected",
        proxy.faults()
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("POST") && r.contains("uploads")),
        "no multipart upload was started: {:?}",
        proxy.requests()
    );
    let objects = bucket.json_objects().await;
    assert!(objects.len() >= 2, "{:?}", objects.keys());
    assert_eq!(offsets_of(&objects), (0..16_000).collect::<Vec<_>>());
}
