//! Admin calls of this issue: dynamic configs (`/v1/configs/{topic|broker}/{name}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{committed, controller_error, parse_body, ApiError, LeaderRequest};
use crate::contract::configs::ConfigPatch;
use crate::contract::metadata::WriteAck;
use crate::contract::{int64, ErrorCode};
use crate::controller::configs::{self, ConfigError};
use crate::controller::topics;
use crate::node::handle::Node;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new().route(
        "/v1/configs/{kind}/{name}",
        get(get_config).patch(patch_config),
    )
}

fn config_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Invalid(m) => ApiError::invalid(m),
        ConfigError::InvalidConfig(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidConfig, m)
        }
        ConfigError::UnknownTopic(m) => {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::UnknownTopicOrPartition, m)
        }
    }
}

async fn get_config(
    State(node): State<Arc<Node>>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let res = configs::resource(&kind, &name).map_err(config_error)?;
    let st = node.sm().read();
    configs::require_topic(&st.image, &res).map_err(config_error)?;
    let map = st.image.config(&res).cloned().unwrap_or_default();
    Ok(Json(map).into_response())
}

async fn patch_config(
    State(node): State<Arc<Node>>,
    Path((kind, name)): Path<(String, String)>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, body| async move {
        let res = configs::resource(&kind, &name).map_err(config_error)?;
        let patch: ConfigPatch = parse_body(&body)?;
        let ((), ack) = node
            .controller()
            .submit(move |v| topics::alter_configs(v, &res, &patch))
            .await
            .map_err(controller_error)?;
        Ok(committed(
            Json(WriteAck {
                offset: int64(ack.offset),
                epoch: ack.epoch,
            })
            .into_response(),
            ack,
        ))
    })
    .await
}
