//! `/api/v1`: what an integration calls (a messaging bot, a shop's front end) and what the page
//! itself searches with. Described in `static/openapi.json`.
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::catalogue::{self, Model};
use crate::failure::{Failure, Kind};
use crate::routes::App;

/// A client that has not sent its photo in this time holds a slot for nothing.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// What multipart/form-data adds around the photo: boundaries and a few part headers.
const FRAMING: usize = 64 << 10;

/// The routes a client calls many of, behind the concurrency limit; and health and this
/// document, which must answer while searches queue.
pub fn routes() -> (Router<Arc<App>>, Router<Arc<App>>) {
    let searches = Router::new()
        .route("/api/v1/search", post(search))
        .route("/api/v1/products/{id}/similar", get(similar))
        .route("/api/v1/products/{id}/image", get(image));
    let others = Router::new().route("/api/v1/health", get(health)).route("/api/v1/openapi.json", get(openapi));
    (searches, others)
}

#[derive(Deserialize)]
pub struct Params {
    n: Option<String>,
    category: Option<String>,
    model: Option<String>,
}

impl Params {
    /// `n` is 1-100; anything else is refused rather than quietly clamped, so a client learns
    /// that it did not get what it asked for.
    fn n(&self) -> Result<i64, Failure> {
        let Some(n) = self.n.as_deref() else { return Ok(10) };
        match n.parse::<i64>() {
            Ok(v @ 1..=100) => Ok(v),
            _ => Err(Failure::new(Kind::BadParameter, format!("n must be an integer from 1 to 100, not {n:?}"))),
        }
    }
    fn category(&self) -> Option<&str> {
        given(&self.category)
    }
    fn model(&self) -> Option<&str> {
        given(&self.model)
    }
}

/// A parameter that is present and not empty (`?category=` filters nothing, as the page sends it).
pub fn given(p: &Option<String>) -> Option<&str> {
    p.as_deref().filter(|v| !v.is_empty())
}

fn params(p: Result<Query<Params>, QueryRejection>) -> Result<Params, Failure> {
    let p = p.map(|Query(p)| p).map_err(|e| Failure::new(Kind::BadParameter, format!("query parameters: {}", e.body_text())))?;
    // PostgreSQL text cannot hold NUL: refused here as the parameter it is, not as the bad image
    // the database's 22021 would be taken for.
    if [&p.category, &p.model].iter().any(|v| v.as_deref().is_some_and(|v| v.contains('\0'))) {
        return Err(Failure::new(Kind::BadParameter, "a parameter holds a NUL character"));
    }
    Ok(p)
}

fn id(p: Result<Path<i64>, PathRejection>) -> Result<i64, Failure> {
    p.map(|Path(id)| id).map_err(|_| Failure::new(Kind::BadParameter, "a product id is an integer"))
}

#[derive(Serialize)]
struct Found {
    id: i64,
    name: Option<String>,
    category: Option<String>,
    distance: Option<f64>,
    image_url: String,
}

/// The answer to a search: the model that answered, then the products nearest first.
fn answer(model: &Model, query: serde_json::Value, found: Vec<catalogue::Product>) -> Response {
    let results: Vec<Found> = found
        .into_iter()
        .map(|p| Found { image_url: format!("/api/v1/products/{}/image", p.id), id: p.id, name: p.name, category: p.category, distance: p.distance })
        .collect();
    Json(json!({ "model": model.name, "dims": model.dims, "query": query, "count": results.len(), "results": results })).into_response()
}

async fn search(State(app): State<Arc<App>>, p: Result<Query<Params>, QueryRejection>, req: Request) -> Result<Response, Failure> {
    let p = params(p)?;
    let (n, model) = (p.n()?, app.catalogue.model(p.model())?);
    let photo = photo(req, app.max_upload).await?;
    let found = app.catalogue.similar(catalogue::Query::Photo(&photo), p.category(), n, Some(&model.name)).await?;
    Ok(answer(model, json!({ "photo_bytes": photo.len() }), found))
}

async fn similar(State(app): State<Arc<App>>, id: Result<Path<i64>, PathRejection>, p: Result<Query<Params>, QueryRejection>) -> Result<Response, Failure> {
    let (id, p) = (self::id(id)?, params(p)?);
    let (n, model) = (p.n()?, app.catalogue.model(p.model())?);
    let found = app.catalogue.similar(catalogue::Query::Product(id), p.category(), n, Some(&model.name)).await?;
    Ok(answer(model, json!({ "product": id }), found))
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

fn is_image_type(t: &str) -> bool {
    t.starts_with("image/") || t.starts_with("application/octet-stream")
}

/// The photo of a search: the whole body when it is typed as an image, or the part `image` (or
/// the first file) of multipart/form-data. An upload over the limit is refused by its declared
/// length before any of it is read, or as soon as more than the limit has arrived.
async fn photo(req: Request, limit: usize) -> Result<Bytes, Failure> {
    let too_large = || Failure::new(Kind::TooLarge, format!("the photo is larger than this server accepts ({} MB)", limit >> 20));
    let kind = content_type(req.headers());
    let multipart = kind.starts_with("multipart/form-data");
    if !multipart && !is_image_type(&kind) {
        let shown = if kind.is_empty() { "none" } else { &kind };
        return Err(Failure::new(Kind::Unsupported, format!("send the photo as an image type or multipart/form-data, not {shown}")));
    }
    let cap = if multipart { limit + FRAMING } else { limit };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|d| d > cap as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, cap)).await {
        Err(_) => return Err(Failure::new(Kind::Timeout, format!("the photo did not arrive within {} s", BODY_TIMEOUT.as_secs()))),
        Ok(Err(e)) if over_limit(&e) => return Err(too_large()),
        Ok(Err(e)) => return Err(Failure::new(Kind::BadImage, format!("the upload ended early or is malformed: {e}"))),
        Ok(Ok(b)) => b,
    };
    let photo = if multipart { part(Request::from_parts(parts, bytes.into())).await? } else { bytes };
    if photo.len() > limit {
        return Err(too_large());
    }
    if photo.is_empty() {
        return Err(Failure::new(Kind::BadImage, "the photo is empty"));
    }
    Ok(photo)
}

/// Whether reading the body stopped at the limit, rather than at a client that went away or
/// sent broken chunks.
fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn part(req: Request) -> Result<Bytes, Failure> {
    let malformed = |e: &dyn std::fmt::Display| Failure::new(Kind::BadImage, format!("malformed multipart/form-data: {e}"));
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| malformed(&e.body_text()))?;
    while let Some(field) = form.next_field().await.map_err(|e| malformed(&e))? {
        if field.name() == Some("image") || field.file_name().is_some() {
            let kind = field.content_type().unwrap_or("application/octet-stream").to_ascii_lowercase();
            if !is_image_type(&kind) {
                return Err(Failure::new(Kind::Unsupported, format!("the photo's part is typed {kind}, not as an image")));
            }
            return field.bytes().await.map_err(|e| malformed(&e));
        }
    }
    Err(Failure::new(Kind::BadParameter, "the form has no part named image and no file"))
}

/// A product's stored photo, typed by its first bytes (the catalogue holds several formats).
async fn image(State(app): State<Arc<App>>, id: Result<Path<i64>, PathRejection>) -> Result<Response, Failure> {
    let bytes = app.catalogue.photo(self::id(id)?).await?;
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

/// 200 when the database answers and the embedding engine has not failed; 503 otherwise, so a
/// load balancer or a bot's monitor can act on the status alone.
async fn health(State(app): State<Arc<App>>) -> Response {
    let models: Vec<_> = app.catalogue.models().iter().map(|m| json!({ "name": m.name, "column": m.column, "dims": m.dims })).collect();
    match app.catalogue.health().await {
        Ok(h) => {
            let ok = h.service.engine_error.is_none();
            let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let body = json!({ "status": if ok { "ok" } else { "degraded" }, "database": { "ok": true, "server_version": h.server_version,
                "extension_version": h.extension_version, "embed_in": h.embed_in }, "embedding_service": h.service, "models": models });
            (status, Json(body)).into_response()
        }
        Err(f) => {
            let body = json!({ "status": "down", "database": { "ok": false, "error": f.message, "sqlstate": f.sqlstate },
                "embedding_service": null, "models": models });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../static/openapi.json")).into_response()
}

/// Unknown paths and methods answer JSON too, never an empty or HTML page.
pub async fn no_route(req: Request) -> Failure {
    Failure::new(Kind::NotFound, format!("no route {}", req.uri().path()))
}

pub async fn wrong_method(req: Request) -> Failure {
    Failure::new(Kind::WrongMethod, format!("{} does not take {}", req.uri().path(), req.method()))
}

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn n_is_one_to_a_hundred() {
        let p = |n: Option<&str>| Params { n: n.map(String::from), category: None, model: None }.n();
        assert_eq!(p(None).unwrap(), 10);
        assert_eq!(p(Some("1")).unwrap(), 1);
        assert_eq!(p(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-5", "ten", "", "1e3", "99999999999999999999"] {
            assert_eq!(p(Some(bad)).unwrap_err().kind, crate::failure::Kind::BadParameter, "{bad}");
        }
    }
}
