//! Topic calls and elections. Reads come from this node's committed image; writes are
//! forwarded to the active controller.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{committed, controller_error, parse_body, ApiError, LeaderRequest};
use crate::contract::partitions::{ElectionRequest, Elections};
use crate::contract::topics::{AddPartitions, CreateTopic, Partitions, TopicSummary};
use crate::contract::ErrorCode;
use crate::controller::{partitions, topics};
use crate::node::handle::Node;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/topics", get(list).post(create))
        .route("/v1/topics/{name}", get(describe).delete(delete_topic))
        .route("/v1/topics/{name}/partitions", post(add_partitions))
        .route("/v1/elections", post(elect))
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

async fn list(State(node): State<Arc<Node>>) -> Json<Vec<TopicSummary>> {
    let st = node.sm().read();
    Json(st.image.topics().map(topics::summary).collect())
}

async fn describe(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let st = node.sm().read();
    let t = st
        .image
        .topic_by_name(&name)
        .ok_or_else(|| unknown_topic(&name))?;
    Ok(Json(topics::describe(&st.image, t)).into_response())
}

async fn create(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: CreateTopic = parse_body(&body)?;
        let (created, ack) = node
            .controller()
            .submit(move |v| topics::create(v, &req))
            .await
            .map_err(controller_error)?;
        Ok(committed(
            (StatusCode::CREATED, Json(created)).into_response(),
            ack,
        ))
    })
    .await
}

async fn delete_topic(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, _body| async move {
        let ((), ack) = node
            .controller()
            .submit(move |v| topics::delete(v, &name))
            .await
            .map_err(controller_error)?;
        Ok(committed(StatusCode::NO_CONTENT.into_response(), ack))
    })
    .await
}

async fn add_partitions(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: AddPartitions = parse_body(&body)?;
        let (added, ack) = node
            .controller()
            .submit(move |v| topics::add_partitions(v, &name, req.count))
            .await
            .map_err(controller_error)?;
        Ok(committed(
            Json(Partitions { partitions: added }).into_response(),
            ack,
        ))
    })
    .await
}

async fn elect(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: ElectionRequest = parse_body(&body)?;
        let (results, ack) = node
            .controller()
            .submit(move |v| partitions::elect(v, &req))
            .await
            .map_err(controller_error)?;
        Ok(committed(
            Json(Elections {
                partitions: results,
            })
            .into_response(),
            ack,
        ))
    })
    .await
}
