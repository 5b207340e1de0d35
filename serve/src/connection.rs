//! One client connection: size-prefixed requests in, responses out, in order.
//!
//! Anything malformed (an absurd length, a header or body that does not decode, an API or
//! version outside what `ApiVersions` advertises) closes this connection only, as Kafka does.
//! Request bytes are counted against the server-wide memory budget before they are read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

use crate::Shared;
use crate::api;
use crate::response::{Encoded, encode};

/// Serves one connection until the client closes it, it misbehaves, or the server stops.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    tracing::debug!(%peer, "connection opened");
    shared
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    shared
        .metrics
        .connections_open
        .fetch_add(1, Ordering::Relaxed);
    match serve_requests(stream, peer, &shared).await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(why) => tracing::warn!(%peer, "closing the connection: {why}"),
    }
    shared
        .metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}

async fn serve_requests(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(), String> {
    let (read, write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 << 10, read);
    let mut write = BufWriter::with_capacity(64 << 10, write);
    loop {
        // Between requests, a stopping server closes the connection.
        let size = tokio::select! {
            () = shared.shutdown.cancelled() => return Ok(()),
            size = read.read_i32() => match size {
                Ok(size) => size,
                Err(e) if hung_up(&e) => return Ok(()),
                Err(e) => return Err(format!("reading a request: {e}")),
            },
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| (4..=shared.config.max_request_bytes).contains(&s))
            .ok_or_else(|| {
                format!(
                    "request length {size} is outside 4..={}",
                    shared.config.max_request_bytes
                )
            })?;
        let permits = u32::try_from(size).map_err(|_| "request too large".to_string())?;
        let _budget = shared
            .memory
            .acquire_many(permits)
            .await
            .map_err(|_| "server stopping".to_string())?;
        let mut body = BytesMut::zeroed(size);
        read.read_exact(&mut body)
            .await
            .map_err(|e| format!("reading a {size}-byte request: {e}"))?;
        shared
            .metrics
            .bytes_in
            .fetch_add(4 + size as u64, Ordering::Relaxed);
        let Some(response) = handle(body.freeze(), peer, shared).await? else {
            continue; // acks = 0: no response
        };
        shared
            .metrics
            .bytes_out
            .fetch_add(response.len() as u64, Ordering::Relaxed);
        // Parts larger than the writer's buffer (record sets) go to the socket directly.
        for part in &response.parts {
            match write.write_all(part).await {
                Ok(()) => {}
                Err(e) if hung_up(&e) => return Ok(()),
                Err(e) => return Err(format!("writing a response: {e}")),
            }
        }
        match write.flush().await {
            Ok(()) => {}
            Err(e) if hung_up(&e) => return Ok(()),
            Err(e) => return Err(format!("writing a response: {e}")),
        }
    }
}

/// Whether the client went away (between requests, or without reading its answer): a normal
/// end of a connection, not worth a warning.
fn hung_up(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    )
}

/// Decodes one request, answers it, and encodes the size-prefixed response (`None`: none is
/// sent).
async fn handle(
    mut body: Bytes,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Option<Encoded>, String> {
    if body.len() < 4 {
        return Err("request shorter than its api key and version".into());
    }
    let key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let api_key = ApiKey::try_from(key).map_err(|()| format!("unknown api key {key}"))?;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("{api_key:?} v{version}: bad request header: {e}"))?;
    let correlation_id = header.correlation_id;
    let reply = match api::supported(api_key) {
        // The codec has no Produce v0-2; they are refused with UNSUPPORTED_VERSION by hand.
        Some(_) if api_key == ApiKey::Produce && version <= 2 => {
            shared.metrics.request(api_key);
            return api::refuse_old_produce(&mut body, version)
                .map(|response| response.map(|body| Encoded::raw(correlation_id, body)));
        }
        Some(range) if range.contains(&version) => {
            let request = RequestKind::decode(api_key, &mut body, version)
                .map_err(|e| format!("{api_key:?} v{version}: bad request: {e}"))?;
            tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
            shared.metrics.request(api_key);
            let client_id = header.client_id.as_deref().unwrap_or_default();
            api::answer(request, version, client_id, shared).await
        }
        // Clients learn the versions from ApiVersions, so that one answers at v0 whatever
        // version was asked (Kafka does the same).
        _ if api_key == ApiKey::ApiVersions => {
            return encode(correlation_id, api_key, 0, api::unsupported_api_versions()).map(Some);
        }
        _ => {
            return Err(format!(
                "{api_key:?} v{version} is not supported ({})",
                api::supported(api_key).map_or("not at all".to_string(), |r| format!(
                    "versions {}..={}",
                    r.start(),
                    r.end()
                ))
            ));
        }
    };
    reply
        .map(|response| encode(correlation_id, api_key, version, response))
        .transpose()
}
