//! The operator dashboard at `/dashboard`: one HTML page with its script
//! inline, served from the binary (nothing to build or fetch). It asks for
//! an API token, keeps it in the tab's `sessionStorage`, and uses the API
//! like any client: streams with live state and thumbnails, creating a
//! stream (its key and push URLs shown once), rotating a key,
//! disconnecting a publisher, a chart of the last minutes, a player link
//! with a minted viewer token.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;

const PAGE: &str = include_str!("../dashboard.html");

/// `GET /dashboard`.
pub async fn page(State(state): State<ApiState>) -> impl IntoResponse {
    let edge_port = state
        .hooks
        .edge_port()
        .map_or_else(|| "null".to_owned(), |p| p.to_string());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE.replace("/*EDGE_PORT*/null", &edge_port),
    )
}
