//! Kafka Connect's REST API over a [`Worker`], so existing scripts and tools work unchanged.
//!
//! Errors are `{"error_code": STATUS, "message": "..."}`, as Kafka Connect sends them.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ConfigOrigin, Error};
use crate::runtime::{OffsetChange, TaskState, Worker};

mod offsets;

type Shared = State<Arc<Worker>>;

/// The API's routes.
pub fn router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list).post(create))
        .route(
            "/connectors/{name}",
            get(info).put(put_config).delete(delete),
        )
        .route("/connectors/{name}/config", get(config).put(put_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/restart", axum::routing::post(restart))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{kind}/config/validate", put(validate))
        .route("/metrics", get(metrics))
        .with_state(worker)
}

/// Serves the API on `listener` until `shutdown` resolves.
///
/// # Errors
/// The server failed.
pub async fn serve(
    worker: Arc<Worker>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(worker))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error response.
struct ApiError(StatusCode, String);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::UnknownConnector(_) => StatusCode::NOT_FOUND,
            Error::ConnectorExists(_) | Error::WrongState { .. } => StatusCode::CONFLICT,
            Error::Config(_) | Error::Data { .. } | Error::UnknownPlugin { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.0.as_u16(), "message": self.1});
        (self.0, axum::Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// A JSON body, with Kafka Connect's error shape when it does not parse.
fn json_body(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body is not JSON: {e}")))
}

/// Keys whose literal values are hidden in responses (references like `${env:X}` are shown).
fn redact_config(mut config: Map<String, Value>) -> Map<String, Value> {
    for (key, value) in config.iter_mut() {
        let lower = key.to_lowercase();
        let sensitive = ["password", "secret", "token", "credential"]
            .iter()
            .any(|word| lower.contains(word));
        if sensitive && value.as_str().is_none_or(|s| !s.starts_with("${")) {
            *value = Value::String("[hidden]".into());
        }
    }
    config
}

async fn connector_info(worker: &Worker, name: &str) -> ApiResult<Value> {
    let (raw, kind, tasks) = worker.connector_config(name).await?;
    let tasks: Vec<Value> = (0..tasks)
        .map(|task| json!({"connector": name, "task": task}))
        .collect();
    Ok(json!({"name": name, "config": redact_config(raw), "tasks": tasks, "type": kind}))
}

async fn root() -> axum::Json<Value> {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": "",
        "kafka_cluster_id": "logbrook",
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    expand: Option<String>,
}

async fn list(
    State(worker): Shared,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let names = worker.connector_names().await;
    let Some(expand) = query.expand else {
        return Ok(axum::Json(json!(names)));
    };
    let mut out = Map::new();
    for name in names {
        let mut entry = Map::new();
        if expand.contains("status") {
            entry.insert("status".into(), status_json(&worker, &name).await?);
        }
        if expand.contains("info") {
            entry.insert("info".into(), connector_info(&worker, &name).await?);
        }
        out.insert(name, Value::Object(entry));
    }
    Ok(axum::Json(Value::Object(out)))
}

async fn create(State(worker): Shared, body: axum::body::Bytes) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("expected {\"name\": \"...\", \"config\": {...}}"))?
        .to_string();
    let config = body
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| bad_request("expected {\"name\": \"...\", \"config\": {...}}"))?;
    if let Some(inner) = config.get("name").and_then(Value::as_str)
        && inner != name
    {
        return Err(bad_request(format!(
            "config name {inner:?} differs from connector name {name:?}"
        )));
    }
    if worker.connector_names().await.contains(&name) {
        return Err(Error::ConnectorExists(name).into());
    }
    let (w, n) = (worker.clone(), name.clone());
    to_completion(async move { w.put_connector(&n, config).await }).await?;
    let info = connector_info(&worker, &name).await?;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

async fn info(State(worker): Shared, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(connector_info(&worker, &name).await?))
}

async fn config(State(worker): Shared, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    let (raw, _, _) = worker.connector_config(&name).await?;
    Ok(axum::Json(Value::Object(redact_config(raw))))
}

async fn put_config(
    State(worker): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    // Accept the config itself (Kafka's PUT .../config) or {"name", "config"}.
    let config = match body.get("config").and_then(Value::as_object) {
        Some(config) if body.get("connector").is_none() => config.clone(),
        _ => body
            .as_object()
            .cloned()
            .ok_or_else(|| bad_request("expected a JSON object of config keys"))?,
    };
    if let Some(inner) = config.get("name").and_then(Value::as_str)
        && inner != name
    {
        return Err(bad_request(format!(
            "config name {inner:?} differs from connector name {name:?} in the path"
        )));
    }
    let (w, n) = (worker.clone(), name.clone());
    let created = to_completion(async move { w.put_connector(&n, config).await }).await?;
    let info = connector_info(&worker, &name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(info)).into_response())
}

async fn delete(State(worker): Shared, Path(name): Path<String>) -> ApiResult<StatusCode> {
    to_completion(async move { worker.delete(&name).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn state_json(state: &TaskState) -> Value {
    match state {
        TaskState::Failed(trace) => json!({"state": state.name(), "trace": trace}),
        other => json!({"state": other.name()}),
    }
}

async fn status_json(worker: &Worker, name: &str) -> ApiResult<Value> {
    let status = worker.status(name).await?;
    let worker_id = worker.config().rest_listen.to_string();
    let mut connector = state_json(&status.state);
    connector["worker_id"] = json!(worker_id);
    let tasks: Vec<Value> = status
        .tasks
        .iter()
        .enumerate()
        .map(|(id, state)| {
            let mut task = state_json(state);
            task["id"] = json!(id);
            task["worker_id"] = json!(status.task_workers.get(id).unwrap_or(&worker_id));
            task
        })
        .collect();
    Ok(json!({"name": name, "connector": connector, "tasks": tasks, "type": status.kind}))
}

async fn status(State(worker): Shared, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(status_json(&worker, &name).await?))
}

async fn tasks(State(worker): Shared, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    let (raw, _, tasks) = worker.connector_config(&name).await?;
    let config = redact_config(raw);
    let tasks: Vec<Value> = (0..tasks)
        .map(|task| json!({"id": {"connector": name, "task": task}, "config": config}))
        .collect();
    Ok(axum::Json(json!(tasks)))
}

async fn pause(State(worker): Shared, Path(name): Path<String>) -> ApiResult<StatusCode> {
    to_completion(async move { worker.set_paused(&name, true).await }).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn resume(State(worker): Shared, Path(name): Path<String>) -> ApiResult<StatusCode> {
    to_completion(async move { worker.set_paused(&name, false).await }).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn restart(State(worker): Shared, Path(name): Path<String>) -> ApiResult<StatusCode> {
    to_completion(async move { worker.restart(&name).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn offsets(State(worker): Shared, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(offsets::to_json(&worker.offsets(&name).await?)))
}

async fn alter_offsets(
    State(worker): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<Value>> {
    let body = json_body(&body)?;
    let (_, kind, _) = worker.connector_config(&name).await?;
    let change = offsets::parse_change(kind, &body).map_err(bad_request)?;
    let changed = alter(&worker, &name, change).await?;
    Ok(axum::Json(
        json!({"message": format!("changed the offsets of {changed} partitions")}),
    ))
}

async fn reset_offsets(
    State(worker): Shared,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let changed = alter(&worker, &name, OffsetChange::Reset).await?;
    Ok(axum::Json(
        json!({"message": format!("reset the offsets of {changed} partitions")}),
    ))
}

/// Changes offsets; a running connector's error names the route that pauses it.
async fn alter(worker: &Arc<Worker>, name: &str, change: OffsetChange) -> ApiResult<usize> {
    let (worker, owned) = (worker.clone(), name.to_string());
    match to_completion(async move { worker.alter_offsets(&owned, change).await }).await {
        Err(ApiError(status, message)) if status == StatusCode::CONFLICT => Err(ApiError(
            status,
            format!("{message} (PUT /connectors/{name}/pause)"),
        )),
        other => other,
    }
}

/// Runs a change of the worker on a task of its own: the worker's changes are not cancel
/// safe, and axum drops a handler whose client hung up.
async fn to_completion<T: Send + 'static>(
    change: impl Future<Output = crate::Result<T>> + Send + 'static,
) -> ApiResult<T> {
    match tokio::spawn(change).await {
        Ok(outcome) => Ok(outcome?),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's task failed: {e}"),
        )),
    }
}

async fn plugins(State(worker): Shared) -> axum::Json<Value> {
    let plugins: Vec<Value> = worker
        .registry()
        .plugins()
        .iter()
        .map(|p| json!({"class": p.name(), "type": p.kind(), "version": env!("CARGO_PKG_VERSION")}))
        .collect();
    axum::Json(json!(plugins))
}

async fn validate(
    State(worker): Shared,
    Path(kind): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<Value>> {
    worker.registry().get(&kind)?;
    let mut config = json_body(&body)?
        .as_object()
        .cloned()
        .ok_or_else(|| bad_request("expected a JSON object of config keys"))?;
    config
        .entry("connector")
        .or_insert_with(|| Value::String(kind.clone()));
    config
        .entry("name")
        .or_insert_with(|| Value::String("validate".into()));
    let error = worker
        .validate(&config, &ConfigOrigin::Rest(kind.clone()))
        .err()
        .map(|e| match e {
            Error::Config(c) => (c.key, c.reason),
            other => (".".to_string(), other.to_string()),
        });
    let mut configs: Vec<Value> = redact_config(config.clone())
        .into_iter()
        .map(|(key, value)| {
            let errors: Vec<&str> = error
                .iter()
                .filter(|(k, _)| k == &key || k.starts_with(&format!("{key}.")) || k.starts_with(&format!("{key}[")))
                .map(|(_, reason)| reason.as_str())
                .collect();
            json!({"value": {"name": key, "value": value, "errors": errors, "recommended_values": [], "visible": true}})
        })
        .collect();
    if let Some((key, reason)) = &error
        && !configs.iter().any(|c| {
            c["value"]["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        })
    {
        configs.push(json!({"value": {"name": key, "value": null, "errors": [reason], "recommended_values": [], "visible": true}}));
    }
    Ok(axum::Json(json!({
        "name": kind,
        "error_count": usize::from(error.is_some()),
        "groups": ["Common"],
        "configs": configs,
    })))
}

async fn metrics(State(worker): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        worker.metrics().render(),
    )
        .into_response()
}
