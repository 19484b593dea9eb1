//! What a request that fails answers: JSON with an HTTP status that fits, and the database's own
//! message and SQLSTATE where it has one. The one mapping of failures for the page and the API.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub sqlstate: Option<String>,
}

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Kind {
    /// The photo could not be read as an image (22P03 and the rest of class 22), is empty, or
    /// came in a malformed body.
    BadImage,
    /// The upload, or the image inside it, is over a limit (the page's, or the server's 54000).
    TooLarge,
    /// A parameter is out of range or names nothing (n, model, a malformed id).
    BadParameter,
    /// The body's type is neither an image nor multipart/form-data.
    Unsupported,
    NotFound,
    /// A route that exists, asked with another method.
    WrongMethod,
    /// No or a wrong bearer token.
    Unauthorized,
    /// The client sent its body too slowly.
    Timeout,
    /// More requests than `--max-concurrent` waited longer than a client should.
    Busy,
    /// The database (or its embedding service) cannot be reached or is shutting down.
    Unavailable,
    /// The statement ran past the server's statement_timeout (57014).
    TimedOut,
    /// The database failed on its own, e.g. a model whose weights are missing.
    Internal,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadImage => StatusCode::BAD_REQUEST,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::BadParameter => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::WrongMethod => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Timeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Busy | Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The kind of a database error by its SQLSTATE: what image_embed raises for the photo is the
/// caller's doing, a connection or the service going away is the server's and may pass.
fn kind_of(sqlstate: &str) -> Kind {
    match sqlstate {
        "42602" | "42704" => Kind::BadParameter, // a model name that is malformed or not installed
        "57014" => Kind::TimedOut,
        s if s.starts_with("22") => Kind::BadImage,
        s if s.starts_with("54") => Kind::TooLarge,
        s if ["08", "53", "57", "58"].iter().any(|c| s.starts_with(c)) => Kind::Unavailable,
        _ => Kind::Internal,
    }
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into(), sqlstate: None }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let mut message = db.message().to_string();
                if let Some(d) = db.detail() {
                    message = format!("{message} ({d})");
                }
                Failure { kind: kind_of(code), message, sqlstate: Some(code.to_string()) }
            }
            None => Failure::new(Kind::Unavailable, format!("database unavailable: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(_) => Failure::new(Kind::Busy, "every database connection is busy; try again"),
            e => Failure::new(Kind::Unavailable, format!("database unavailable: {e}")),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = Json(json!({ "error": self.message, "sqlstate": self.sqlstate, "status": status.as_u16() }));
        match self.kind {
            Kind::Unauthorized => (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response(),
            // A busy server is worth asking again in a moment; one that is down is not yet.
            Kind::Busy => (status, [(header::RETRY_AFTER, "1")], body).into_response(),
            _ => (status, body).into_response(),
        }
    }
}

/// A handler that panicked answers 500 JSON like any other failure; the connection, its slot
/// and its pool connection are released by the unwinding as before.
pub async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => Failure::new(Kind::Internal, "the server failed on this request (see its log)").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::{kind_of, Kind};

    #[test]
    fn sqlstates_map_to_statuses() {
        for (code, kind, status) in [
            ("22P03", Kind::BadImage, 400),
            ("22023", Kind::BadImage, 400),
            ("54000", Kind::TooLarge, 413),
            ("42704", Kind::BadParameter, 422),
            ("57P01", Kind::Unavailable, 503),
            ("57014", Kind::TimedOut, 504),
            ("08006", Kind::Unavailable, 503),
            ("58000", Kind::Unavailable, 503),
            ("58P01", Kind::Unavailable, 503),
            ("XX000", Kind::Internal, 500),
            ("F0000", Kind::Internal, 500),
        ] {
            assert_eq!(kind_of(code), kind, "{code}");
            assert_eq!(kind.status().as_u16(), status, "{code}");
        }
    }
}
