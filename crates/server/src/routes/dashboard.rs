//! The dashboard: the React app's build (`dashboard/dist`, committed) embedded in the binary, so
//! `hive serve` shows it with no node and no files beside it. `/` is its page, `/assets/*` its
//! content-hashed scripts and styles (cached for a year: a new build has new names).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::error::ApiError;

#[derive(Embed)]
#[folder = "../../dashboard/dist"]
struct Build;

fn file(path: &str, cache: &'static str) -> Response {
    let Some(file) = Build::get(path) else {
        return ApiError::NotFound {
            what: format!("dashboard file {path}"),
        }
        .into_response();
    };
    let mime = file.metadata.mimetype().to_string();
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(&mime)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        file.data,
    )
        .into_response()
}

pub async fn index() -> Response {
    file("index.html", "no-cache")
}

pub async fn asset(Path(path): Path<String>) -> Response {
    file(
        &format!("assets/{path}"),
        "public, max-age=31536000, immutable",
    )
}
