//! Broker calls: registration, heartbeats, listing, unregistration and AlterPartition.
//! Followers forward the writes (heartbeats included) to the active controller.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{controller_error, parse_body, ApiError, LeaderRequest};
use crate::contract::ErrorCode;
use crate::controller::brokers::{self, security_protocol_name, Heartbeat, Listener, Registration};
use crate::controller::partitions::{self, AlterPartition};
use crate::image::BrokerRegistration;
use crate::node::server::Node;
use crate::record::uuid_fmt;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/brokers", get(list))
        .route("/v1/brokers/{id}", get(one).delete(unregister))
        .route("/v1/brokers/{id}/registration", post(register))
        .route("/v1/brokers/{id}/heartbeat", post(heartbeat))
        .route("/v1/partitions/alter", post(alter_partition))
}

/// One broker as `GET /v1/brokers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrokerView {
    /// Broker id.
    pub id: i32,
    /// Broker epoch (offset of its registration).
    pub epoch: i64,
    /// Incarnation id (Kafka's base64 form).
    pub incarnation_id: String,
    /// `fenced`, `active` or `controlled_shutdown`.
    pub state: String,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Rack.
    pub rack: Option<String>,
}

impl BrokerView {
    /// The view of a registration.
    pub fn of(b: &BrokerRegistration) -> Self {
        BrokerView {
            id: b.broker_id,
            epoch: b.broker_epoch,
            incarnation_id: uuid_fmt::kafka_uuid(&b.incarnation_id),
            state: if b.fenced {
                "fenced"
            } else if b.in_controlled_shutdown {
                "controlled_shutdown"
            } else {
                "active"
            }
            .to_string(),
            listeners: b
                .listeners
                .iter()
                .map(|l| Listener {
                    name: l.name.clone(),
                    host: l.host.clone(),
                    port: l.port,
                    security_protocol: security_protocol_name(l.security_protocol),
                })
                .collect(),
            rack: b.rack.clone(),
        }
    }
}

fn broker_id(s: &str) -> Result<i32, ApiError> {
    s.parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::invalid(format!("broker id {s:?} is not a non-negative integer")))
}

async fn list(State(node): State<Arc<Node>>) -> Json<Vec<BrokerView>> {
    let st = node.sm.read();
    Json(st.image.brokers().map(BrokerView::of).collect())
}

async fn one(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = broker_id(&id)?;
    let st = node.sm.read();
    let b = st.image.broker(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BrokerIdNotRegistered,
            format!("broker {id} is not registered"),
        )
    })?;
    Ok(Json(BrokerView::of(b)).into_response())
}

async fn register(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, body| async move {
        let id = broker_id(&id)?;
        let req: Registration = parse_body(&body)?;
        let (epoch, _) = node
            .controller
            .submit(move |v| brokers::register(v, id, &req))
            .await
            .map_err(controller_error)?;
        Ok(Json(json!({ "broker_epoch": epoch })).into_response())
    })
    .await
}

async fn heartbeat(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, body| async move {
        let id = broker_id(&id)?;
        let req: Heartbeat = parse_body(&body)?;
        let (answer, _) = node
            .controller
            .submit(move |v| brokers::heartbeat(v, id, &req))
            .await
            .map_err(controller_error)?;
        Ok(Json(answer).into_response())
    })
    .await
}

async fn unregister(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, _body| async move {
        let id = broker_id(&id)?;
        node.controller
            .submit(move |v| brokers::unregister(v, id))
            .await
            .map_err(controller_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn alter_partition(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: AlterPartition = parse_body(&body)?;
        let (answer, _) = node
            .controller
            .submit(move |v| partitions::alter(v, &req))
            .await
            .map_err(controller_error)?;
        Ok(Json(answer).into_response())
    })
    .await
}
