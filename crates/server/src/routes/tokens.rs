//! `/api/v1/tokens` (admin): create, list and revoke API tokens. See [`crate::auth`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hive_proto::api::{ErrorBody, NewToken, TokenCreated, TokenInfo, TokenList};
use hive_store::StoreError;

use crate::auth::tokens::{Grant, TokenError, Tokens};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::views;

fn tokens(state: &AppState) -> Result<&Tokens, ApiError> {
    state.tokens.as_deref().ok_or_else(|| ApiError::Conflict {
        message: "authentication is off (auth.enabled): there are no tokens".into(),
    })
}

/// Create a token; its text is in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "create_token", request_body = NewToken, responses(
    (status = 201, body = TokenCreated),
    (status = 400, body = ErrorBody),
    (status = 409, description = "The name is taken, or authentication is off", body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let tokens = tokens(&state)?;
    let grant = Grant {
        name: new.name,
        role: new.role,
        capabilities: new.capabilities,
        groups: new.groups,
        expires_in_s: new.expires_in_s,
    };
    let (token, record) = tokens
        .create(grant, state.clock.now())
        .map_err(|e| match e {
            TokenError::Invalid { field, message } => ApiError::invalid(field, message),
            TokenError::Store(StoreError::Duplicate(what)) => ApiError::Conflict {
                message: format!("{what} exists already"),
            },
            TokenError::Store(e) => ApiError::Store(e),
        })?;
    let info = views::token(&record);
    Ok((StatusCode::CREATED, Json(TokenCreated { token, info })))
}

#[utoipa::path(get, path = "/api/v1/tokens", operation_id = "list_tokens", responses(
    (status = 200, body = TokenList),
    (status = 409, description = "Authentication is off: there are no tokens", body = ErrorBody),
))]
pub async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let items = tokens(&state)?.list().iter().map(views::token).collect();
    Ok(Json(TokenList { items }))
}

/// Revoke a token: it stops working at once.
#[utoipa::path(post, path = "/api/v1/tokens/{name}/revoke", operation_id = "revoke_token", params(("name" = String, Path)), responses(
    (status = 200, body = TokenInfo), (status = 404, body = ErrorBody),
    (status = 409, description = "Authentication is off: there are no tokens", body = ErrorBody),
))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let tokens = tokens(&state)?;
    if !tokens.revoke(&name, state.clock.now())? {
        return Err(ApiError::NotFound {
            what: format!("live token {name:?}"),
        });
    }
    let record = tokens
        .list()
        .into_iter()
        .find(|t| t.name == name)
        .expect("just revoked");
    Ok(Json(views::token(&record)))
}
