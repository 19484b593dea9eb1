//! The page, its script, and a small JSON API over the catalogue.
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, Path, Query as Params, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::catalogue::{Catalogue, Failure, Kind, Query};

struct App {
    catalogue: Catalogue,
    max_upload: usize,
}

type Shared = State<Arc<App>>;

pub fn router(catalogue: Catalogue, max_upload: usize) -> Router {
    let app = Arc::new(App { catalogue, max_upload });
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../static/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../static/app.js")) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", include_str!("../static/style.css")) }))
        .route("/api/categories", get(categories))
        .route("/api/products", get(products))
        .route("/api/queue", get(queue))
        .route("/api/models", get(models))
        .route("/api/similar/{id}", get(similar_to_product))
        .route("/api/search", post(search_by_photo))
        .route("/image/{id}", get(image))
        // The upload limit is applied by search_by_photo itself, with a message the page can show.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match self.kind {
            Kind::BadInput => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.message, "sqlstate": self.sqlstate }))).into_response()
    }
}

#[derive(Deserialize)]
struct Filter {
    category: Option<String>,
    n: Option<i64>,
    /// Listings: the newest products instead of a random sample.
    newest: Option<bool>,
    /// Searches: the model whose vectors answer (the default model's when absent).
    model: Option<String>,
}

impl Filter {
    fn category(&self) -> Option<&str> {
        self.category.as_deref().filter(|c| !c.is_empty())
    }
    fn model(&self) -> Option<&str> {
        self.model.as_deref().filter(|m| !m.is_empty())
    }
    fn n(&self, default: i64) -> i64 {
        self.n.unwrap_or(default).clamp(1, 100)
    }
}

async fn categories(State(app): Shared) -> Result<Response, Failure> {
    Ok(Json(app.catalogue.categories().await?).into_response())
}

async fn products(State(app): Shared, Params(f): Params<Filter>) -> Result<Response, Failure> {
    Ok(Json(app.catalogue.sample(f.category(), f.n(24), f.newest.unwrap_or(false)).await?).into_response())
}

async fn models(State(app): Shared) -> Response {
    Json(app.catalogue.models()).into_response()
}

async fn queue(State(app): Shared) -> Result<Response, Failure> {
    Ok(Json(app.catalogue.queue().await?).into_response())
}

async fn similar_to_product(State(app): Shared, Path(id): Path<i64>, Params(f): Params<Filter>) -> Result<Response, Failure> {
    let found = app.catalogue.similar(Query::Product(id), f.category(), f.n(10), f.model()).await?;
    Ok(Json(found).into_response())
}

async fn search_by_photo(State(app): Shared, Params(f): Params<Filter>, body: Body) -> Result<Response, Failure> {
    let limit = app.max_upload;
    let photo =
        to_bytes(body, limit).await.map_err(|_| Failure::new(Kind::BadInput, format!("the file is larger than this page accepts ({} MB)", limit >> 20)))?;
    if photo.is_empty() {
        return Err(Failure::new(Kind::BadInput, "the upload is empty"));
    }
    let found = app.catalogue.similar(Query::Photo(&photo), f.category(), f.n(10), f.model()).await?;
    Ok(Json(found).into_response())
}

/// A product's stored photo, typed by its first bytes (the catalogue holds several formats).
async fn image(State(app): Shared, Path(id): Path<i64>) -> Result<Response, Failure> {
    let bytes = app.catalogue.photo(id).await?;
    let kind = match bytes.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'B', b'M', ..] => "image/bmp",
        _ => "application/octet-stream",
    };
    let headers = [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=3600"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")];
    Ok((headers, bytes).into_response())
}
