//! The page, its script, the helpers only the page calls, and the API (api.rs) it searches with.
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query as Params, State};
use axum::http::header;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::access::{self, Token};
use crate::api;
use crate::catalogue::Catalogue;
use crate::failure::Failure;

pub struct App {
    pub catalogue: Catalogue,
    pub max_upload: usize,
}

type Shared = State<Arc<App>>;

pub fn router(catalogue: Catalogue, max_upload: usize, max_concurrent: usize, token: Option<Token>) -> Router {
    let app = Arc::new(App { catalogue, max_upload });
    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let (searches, others) = api::routes();
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../static/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../static/app.js")) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", include_str!("../static/style.css")) }))
        .route("/api/models", get(models))
        .merge(
            Router::new()
                .route("/api/categories", get(categories))
                .route("/api/products", get(products))
                .route("/api/queue", get(queue))
                .merge(searches)
                .layer(from_fn_with_state(slots, access::limit)),
        )
        .merge(others)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        // The upload limit is applied by the API itself, before and while it reads a body.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
        .layer(from_fn(crate::failure::catch_panic))
        .layer(from_fn_with_state(Arc::new(token), access::require_token))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Deserialize)]
struct Filter {
    category: Option<String>,
    n: Option<i64>,
    /// The newest products instead of a random sample.
    newest: Option<bool>,
}

async fn categories(State(app): Shared) -> Result<Response, Failure> {
    Ok(Json(app.catalogue.categories().await?).into_response())
}

async fn products(State(app): Shared, Params(f): Params<Filter>) -> Result<Response, Failure> {
    let category = api::given(&f.category);
    Ok(Json(app.catalogue.sample(category, f.n.unwrap_or(24).clamp(1, 100), f.newest.unwrap_or(false)).await?).into_response())
}

async fn models(State(app): Shared) -> Response {
    Json(app.catalogue.models()).into_response()
}

async fn queue(State(app): Shared) -> Result<Response, Failure> {
    Ok(Json(app.catalogue.queue().await?).into_response())
}
