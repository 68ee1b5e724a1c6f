//! `/sim/*`: what tests and harnesses ask the simulated node besides the node API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::node_api::EMPTY_OBJECT;
use super::{node_error, ok, respond, Shared};

pub(super) async fn sim_status(State(shared): State<Arc<Shared>>) -> Response {
    ok(shared.status_json().to_string())
}

fn query_u64(uri: &Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

pub(super) async fn sim_expected(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let Some(number) = query_u64(&uri, "num") else {
        return respond(
            StatusCode::BAD_REQUEST,
            node_error("expected ?num=<block number>"),
        );
    };
    match shared.chain.expected_block(number) {
        Some(block) => match serde_json::to_vec(&block) {
            Ok(body) => ok(body),
            Err(error) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                node_error(&error.to_string()),
            ),
        },
        None => respond(StatusCode::NOT_FOUND, EMPTY_OBJECT),
    }
}

pub(super) async fn sim_advance(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let blocks = query_u64(&uri, "blocks").unwrap_or(1);
    shared.chain.advance(blocks);
    ok(json!({ "head": shared.chain.head() }).to_string())
}
