//! HTTP plumbing: the router, body and header parsing that never panics and
//! always answers in the error shape, request logging, static files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::limits::Limits;
use crate::{auth, changes, metrics, openapi, records, sync_jobs, AppState};

/// Largest request line plus headers hyper reads (its read buffer).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A finished answer to a mutating request: what is stored for idempotent replays.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body text, empty for `204`.
    pub body: String,
    /// Whether this came from the idempotency store.
    pub replayed: bool,
}

impl Answer {
    /// An answer with a JSON body.
    ///
    /// # Errors
    /// Internal error if `value` cannot be serialised.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            body: serde_json::to_string(value).map_err(ApiError::internal)?,
            replayed: false,
        })
    }

    /// An answer without a body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: String::new(),
            replayed: false,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = if self.body.is_empty() {
            self.status.into_response()
        } else {
            (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                self.body,
            )
                .into_response()
        };
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// Parses a JSON request body. Syntax errors, bad UTF-8 and empty bodies are
/// `400`; bodies over the body limit (`DefaultBodyLimit`) are `413`.
///
/// # Errors
/// `400 invalid`, `413 too_large`.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// The bytes of a body that could be read, or none.
pub fn body_bytes(body: &Result<Bytes, BytesRejection>) -> &[u8] {
    body.as_ref().map_or(&[], |b| &b[..])
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is larger than this server accepts",
    )
}

/// Unwraps path parameters, turning a bad path (e.g. bad percent-encoding) into `400`.
///
/// # Errors
/// `400 invalid`.
pub fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

/// Reads `If-Match`: accepts `"7"`, `7` and `W/"7"`; `None` when absent.
///
/// # Errors
/// `400 invalid` for anything else.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let mut values = headers.get_all(header::IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("If-Match must be a record version such as \"7\"");
    if values.next().is_some() {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match text.parse::<i64>() {
        Ok(v) if v >= 1 && !text.starts_with('+') => Ok(Some(v)),
        _ => Err(bad()),
    }
}

/// Options of the router.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Directory of the web app; `index.html` answers unknown paths (SPA).
    pub static_dir: PathBuf,
    /// Allow any origin.
    pub cors: bool,
    /// Body limit and request timeout.
    pub limits: Limits,
}

/// One route of the API. [`api_routes`] is the only list of them: the router
/// is built from it, and a test checks it against the OpenAPI document.
pub struct ApiRoute {
    /// Path in axum's syntax, which is also OpenAPI's (`/api/{collection}`).
    pub path: &'static str,
    /// The method, upper case.
    pub method: &'static str,
    /// Whether the request deadline (`408`) applies; not to event streams.
    pub timed: bool,
    handler: MethodRouter<AppState>,
}

fn api_route<H, T>(method: &'static str, path: &'static str, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("no route uses {other}"),
    };
    ApiRoute {
        path,
        method,
        timed: true,
        handler: on(filter, handler),
    }
}

/// Every route under `/api/`, and `/metrics`.
pub fn api_routes() -> Vec<ApiRoute> {
    vec![
        api_route("POST", "/api/login", auth::login_route),
        api_route("POST", "/api/logout", auth::logout_route),
        api_route("GET", "/api/me", auth::me_route),
        api_route("GET", "/api/changes", changes::feed_route),
        ApiRoute {
            timed: false,
            ..api_route("GET", "/api/events", changes::events_route)
        },
        api_route("GET", "/api/sync", sync_jobs::list_route),
        api_route("POST", "/api/sync", sync_jobs::start_route),
        api_route("GET", "/api/sync/{sync_id}", sync_jobs::status_route),
        api_route("DELETE", "/api/sync/{sync_id}", sync_jobs::cancel_route),
        api_route("GET", "/api/openapi.json", openapi::openapi_route),
        api_route("GET", "/api/metrics", metrics::summary_route),
        api_route("GET", "/metrics", metrics::prometheus_route),
        api_route("GET", "/api/{collection}", records::list_route),
        api_route("POST", "/api/{collection}", records::create_route),
        api_route("GET", "/api/{collection}/{id}", records::get_route),
        api_route("PATCH", "/api/{collection}/{id}", records::patch_route),
        api_route("DELETE", "/api/{collection}/{id}", records::delete_route),
        api_route(
            "POST",
            "/api/{collection}/{id}/comments",
            records::comment_route,
        ),
    ]
}

/// The whole HTTP surface.
pub fn router(state: AppState, options: &RouterOptions) -> Router {
    let figures = Arc::clone(&state.metrics);
    let (timed, untimed): (Vec<_>, Vec<_>) = api_routes().into_iter().partition(|r| r.timed);
    let mut api = Router::new();
    for r in timed {
        api = api.route(r.path, r.handler);
    }
    api = api
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        // Every request but an event stream (added after this layer) has a deadline.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.limits.request_timeout,
        ));
    for r in untimed {
        api = api.route(r.path, r.handler);
    }

    let index = options.static_dir.join("index.html");
    let files = ServeDir::new(&options.static_dir).fallback(ServeFile::new(index));
    let mut app = api
        .fallback(move |request: Request| {
            let files = files.clone();
            async move {
                if request.uri().path().starts_with("/api/") || request.uri().path() == "/api" {
                    return ApiError::not_found("no such API route").into_response();
                }
                if names_a_dotfile(request.uri().path()) {
                    return ApiError::not_found("no such file").into_response();
                }
                match files.oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(e) => ApiError::internal(e).into_response(),
                }
            }
        })
        .layer(DefaultBodyLimit::max(options.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            figures,
            metrics::track_requests,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::map_response(shape_bare_refusals))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state);
    if options.cors {
        app = app.layer(CorsLayer::permissive());
    }
    app
}

/// Whether any segment of a URL path (percent-decoded) starts with a dot:
/// `.env`, `.git/config`, `%2Egit`. Such files are never served.
pub fn names_a_dotfile(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        segment.starts_with('.') || lower.starts_with("%2e")
    })
}

/// Refusals made below the handlers (a layer's `408`, `413`, ...) come
/// without a body; give them the one error shape.
async fn shape_bare_refusals(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let code = match status {
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal",
        _ => "invalid",
    };
    let message = status.canonical_reason().unwrap_or("refused");
    let mut shaped = ApiError::new(status, code, message.to_ascii_lowercase()).into_response();
    for (name, value) in response.headers() {
        if !shaped.headers().contains_key(name) {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped.headers_mut().remove(header::CONTENT_LENGTH);
    shaped
}

/// Serves `app` on `listener` until `shutdown` turns `true`, then waits for
/// open connections. Connections are HTTP/1 by hyper, whose header-read timer
/// closes a connection that has not sent a request's headers within
/// `header_timeout`; the timer also runs while a keep-alive connection waits
/// for its next request, so an idle connection is closed after the same time.
/// Accept errors (too many open files) are waited out, never fatal.
///
/// # Errors
/// Never in practice; the type matches a listener task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    header_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Request line and headers together stay under 64 KiB: hyper answers
        // a longer URI with 414 and bigger headers with 431 itself, before
        // any of our code runs, so those two have no JSON body.
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                app.clone().oneshot(request.map(Body::new))
            });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// One log line per request: method, path (never the query, which may hold a
/// token), status and time taken.
async fn log_request(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&with("\"7\"")).unwrap(), Some(7));
        assert_eq!(if_match(&with("7")).unwrap(), Some(7));
        assert_eq!(if_match(&with("W/\"7\"")).unwrap(), Some(7));
        assert!(if_match(&with("*")).is_err());
        assert!(if_match(&with("\"x\"")).is_err());
        assert!(if_match(&with("0")).is_err());
        assert!(if_match(&with("+7")).is_err());
    }
}
