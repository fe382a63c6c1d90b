//! Broker calls: registration, heartbeats, listing, unregistration and AlterPartition.
//! Followers forward the writes (heartbeats included) to the active controller.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{committed, controller_error, parse_body, ApiError, LeaderRequest};
use crate::contract::brokers::{BrokerEpoch, BrokerView, Heartbeat, Registration};
use crate::contract::partitions::AlterPartition;
use crate::contract::ErrorCode;
use crate::controller::brokers;
use crate::controller::partitions;
use crate::node::handle::Node;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/brokers", get(list))
        .route("/v1/brokers/{id}", get(one).delete(unregister))
        .route("/v1/brokers/{id}/registration", post(register))
        .route("/v1/brokers/{id}/heartbeat", post(heartbeat))
        .route("/v1/partitions/alter", post(alter_partition))
}

fn broker_id(s: &str) -> Result<i32, ApiError> {
    s.parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::invalid(format!("broker id {s:?} is not a non-negative integer")))
}

async fn list(State(node): State<Arc<Node>>) -> Json<Vec<BrokerView>> {
    let st = node.sm().read();
    Json(st.image.brokers().map(BrokerView::of).collect())
}

async fn one(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = broker_id(&id)?;
    let st = node.sm().read();
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
        let (epoch, ack) = node
            .controller()
            .submit(move |v| brokers::register(v, id, &req))
            .await
            .map_err(controller_error)?;
        Ok(committed(
            Json(BrokerEpoch {
                broker_epoch: epoch,
            })
            .into_response(),
            ack,
        ))
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
        let (answer, ack) = node
            .controller()
            .submit(move |v| brokers::heartbeat(v, id, &req))
            .await
            .map_err(controller_error)?;
        Ok(committed(Json(answer).into_response(), ack))
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
        let ((), ack) = node
            .controller()
            .submit(move |v| brokers::unregister(v, id))
            .await
            .map_err(controller_error)?;
        Ok(committed(StatusCode::NO_CONTENT.into_response(), ack))
    })
    .await
}

async fn alter_partition(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: AlterPartition = parse_body(&body)?;
        let (answer, ack) = node
            .controller()
            .submit(move |v| partitions::alter(v, &req))
            .await
            .map_err(controller_error)?;
        Ok(committed(Json(answer).into_response(), ack))
    })
    .await
}
