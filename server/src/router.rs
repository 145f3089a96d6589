//! The HTTP surface: the route table, the router built from it with its
//! layers (deadlines, body limit, request log, error shape for bare
//! refusals, static files), and the connection loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::limits::Limits;
use crate::{
    auth, changes, history, metrics, openapi, presence, record_routes, stream_tickets, sync_routes,
    AppState,
};

/// Largest request line plus headers hyper reads (its read buffer).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

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
        api_route("POST", "/api/events/ticket", stream_tickets::ticket_route),
        api_route("GET", "/api/sync", sync_routes::list_route),
        api_route("POST", "/api/sync", sync_routes::start_route),
        api_route("GET", "/api/sync/{sync_id}", sync_routes::status_route),
        api_route("DELETE", "/api/sync/{sync_id}", sync_routes::cancel_route),
        api_route(
            "GET",
            "/api/sync/{sync_id}/conflicts",
            sync_routes::conflicts_route,
        ),
        api_route("POST", "/api/presence", presence::set_route),
        api_route("GET", "/api/presence", presence::people_route),
        api_route("GET", "/api/openapi.json", openapi::openapi_route),
        api_route("GET", "/api/metrics", metrics::summary_route),
        api_route("GET", "/metrics", metrics::prometheus_route),
        api_route("GET", "/api/{collection}", record_routes::list_route),
        api_route("POST", "/api/{collection}", record_routes::create_route),
        api_route("GET", "/api/{collection}/{id}", record_routes::get_route),
        api_route(
            "PATCH",
            "/api/{collection}/{id}",
            record_routes::patch_route,
        ),
        api_route(
            "DELETE",
            "/api/{collection}/{id}",
            record_routes::delete_route,
        ),
        api_route(
            "POST",
            "/api/{collection}/{id}/comments",
            record_routes::comment_route,
        ),
        api_route(
            "GET",
            "/api/{collection}/{id}/history",
            history::history_route,
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
