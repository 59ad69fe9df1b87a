//! `ApiError`: every way a request can fail, mapped to a status code and the JSON body
//! `{"error": {"code", "message", "field"?}}`. A 5xx never carries internal details; those go to
//! the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hive_core::ValidationError;
use hive_proto::api::{ErrorBody, ErrorDetail};
use hive_store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    MalformedJson { message: String },
    #[error("{field:?}: {message}")]
    InvalidField {
        field: Option<String>,
        message: String,
    },
    #[error("{message}")]
    UnknownDependency { field: String, message: String },
    #[error("{message}")]
    PayloadTooLarge {
        field: Option<String>,
        message: String,
    },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("the request body did not arrive within {ms} ms")]
    BodyTimeout { ms: u64 },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("a valid token is required: Authorization: Bearer <token>")]
    Unauthorized,
    #[error("the token {name:?} expired at {at}; ask an admin for a new one")]
    TokenExpired { name: String, at: String },
    #[error("the token {name:?} is over its rate limit; try again in {retry_after_s} s")]
    RateLimited { name: String, retry_after_s: u64 },
    /// Refused by a browser defence (Host, Origin) or a token's role; `code` says which.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { message: String },
    /// A task of the request carries an idempotency key another hub's task took while this
    /// request was being committed (several hubs): nothing of the request was kept.
    #[error(
        "a task submitted to another hub took the idempotency key {key:?} while this request was \
         being committed; nothing of this request was kept: submit it again after Retry-After to \
         get that task"
    )]
    KeyTaken { field: String, key: String },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// Admission control: the work in flight is at its bound.
    #[error("the hub is at capacity for {what}; try again in {retry_after_s} s")]
    Overloaded {
        what: &'static str,
        retry_after_s: u64,
    },
    /// A commit failed a moment ago: new work is refused at once for a while.
    #[error(
        "the store refused a recent commit (is the disk full?); try again in {retry_after_s} s"
    )]
    StoreRefusing { retry_after_s: u64 },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A validation error, with its field placed under `prefix` (e.g. `tasks[2]`).
    pub fn from_validation(e: ValidationError, prefix: &str) -> Self {
        let field = if prefix.is_empty() {
            e.field
        } else {
            format!("{prefix}.{}", e.field)
        };
        if e.too_large {
            ApiError::PayloadTooLarge {
                field: Some(field),
                message: e.reason,
            }
        } else {
            ApiError::InvalidField {
                field: Some(field),
                message: e.reason,
            }
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::MalformedJson { .. } => (StatusCode::BAD_REQUEST, "malformed_json", None),
            ApiError::InvalidField { field, .. } => {
                (StatusCode::BAD_REQUEST, "invalid_field", field.clone())
            }
            ApiError::UnknownDependency { field, .. } => (
                StatusCode::BAD_REQUEST,
                "unknown_dependency",
                Some(field.clone()),
            ),
            ApiError::PayloadTooLarge { field, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                field.clone(),
            ),
            ApiError::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            ),
            ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "body_timeout", None),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code, None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::TokenExpired { .. } => (StatusCode::UNAUTHORIZED, "token_expired", None),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict", None),
            ApiError::KeyTaken { field, .. } => (
                StatusCode::CONFLICT,
                "idempotency_key_taken",
                Some(field.clone()),
            ),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", None),
            ApiError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", None),
            ApiError::Store(_) | ApiError::StoreRefusing { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None)
            }
        }
    }

    /// Seconds for the `Retry-After` header of an answer the client should repeat later.
    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::StoreRefusing { retry_after_s }
            | ApiError::Overloaded { retry_after_s, .. }
            | ApiError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            // Not `ShuttingDown`: a request cut off by the stop may have been committed.
            // A key taken meanwhile: the hub refuses submits while it rebuilds (a quarter of a
            // second), then the same request finds the other hub's task.
            ApiError::Store(_) | ApiError::KeyTaken { .. } => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store error answered with 503");
                "the store cannot serve this request right now".to_string()
            }
            ApiError::InvalidField { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::BodyTimeout { .. }) {
            // The rest of the body is not read: the connection cannot carry another request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        // How to authenticate, which a 401 must say (RFC 9110, 11.6.1); for an expired token,
        // in the words of RFC 6750, 3.1.
        let challenge = match self {
            ApiError::Unauthorized => Some("Bearer"),
            ApiError::TokenExpired { .. } => {
                Some("Bearer error=\"invalid_token\", error_description=\"the token expired\"")
            }
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = self.retry_after_s() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
