//! The HTTP server: `GET /` the page, `GET /api/picture` the JSON, everything else 404.
//!
//! The page polls `/api/picture` (every [`DashboardConfig::poll_interval`]) rather than holding
//! a Server-Sent Events stream open: each poll is a short request behind one shared cache, so
//! any number of open pages costs one picture per time-to-live and no task per viewer; a page
//! that was asleep or lost the server just polls again; and a headless browser's virtual clock
//! (the end-to-end test) advances past a finished fetch but stalls behind an open stream.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::cache::{PictureCache, PictureError};
use super::page;
use super::source::PictureSource;

/// Limits and timings of a dashboard server.
#[derive(Clone, Debug)]
pub struct DashboardConfig {
    /// Open connections at most; one more is answered `503` and closed.
    pub max_connections: usize,
    /// How long one picture is reused for every request.
    pub picture_ttl: Duration,
    /// How long a request waits for the source before answering `503`.
    pub picture_timeout: Duration,
    /// A connection that sends no complete request head for this long is closed (slow or idle
    /// clients cannot hold connections forever).
    pub header_read_timeout: Duration,
    /// How often the page asks for a new picture.
    pub poll_interval: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            picture_ttl: Duration::from_millis(500),
            picture_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Why a dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the dashboard: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The configuration cannot work.
    #[error("invalid dashboard configuration: {0}")]
    Config(&'static str),
}

/// A running dashboard server. Dropping it (or [`Dashboard::shutdown`]) stops it and closes
/// every connection.
pub struct Dashboard {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Dashboard {
    /// The address it listens on (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// Stops accepting, closes every connection and waits until the server task has ended.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Without a runtime to finish in, abort; either way the connections die with the task.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves the dashboard on `addr` with the default [`DashboardConfig`].
pub async fn serve(addr: SocketAddr, source: Arc<dyn PictureSource>) -> Result<Dashboard, DashboardError> {
    serve_with(addr, source, DashboardConfig::default()).await
}

/// Serves the dashboard on `addr` with `config`.
pub async fn serve_with(
    addr: SocketAddr,
    source: Arc<dyn PictureSource>,
    config: DashboardConfig,
) -> Result<Dashboard, DashboardError> {
    if config.max_connections == 0 {
        return Err(DashboardError::Config("max_connections must be at least 1"));
    }
    if config.poll_interval.is_zero() || config.picture_timeout.is_zero() || config.header_read_timeout.is_zero() {
        return Err(DashboardError::Config("poll_interval, picture_timeout and header_read_timeout must be positive"));
    }
    let listener = TcpListener::bind(addr).await.map_err(|source| DashboardError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| DashboardError::Bind { addr, source })?;
    let state = Arc::new(AppState {
        cache: PictureCache::new(source, config.picture_ttl, config.picture_timeout),
        page: page::render(config.poll_interval),
    });
    let router = Router::new()
        .route("/", get(get_page))
        .route("/api/picture", get(get_picture))
        .fallback(not_found)
        .with_state(state);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, router, config, stopped));
    Ok(Dashboard { local_addr, stop: Some(stop), task: Some(task) })
}

struct AppState {
    cache: PictureCache,
    page: String,
}

async fn get_page(State(state): State<Arc<AppState>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // The page loads nothing from anywhere: inline script and style, data from this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:",
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        state.page.clone(),
    )
        .into_response()
}

async fn get_picture(State(state): State<Arc<AppState>>) -> Response {
    match state.cache.json().await {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            json,
        )
            .into_response(),
        Err(err @ (PictureError::TimedOut(_) | PictureError::Busy)) => {
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, HeaderValue::from_static("1"))], err.to_string())
                .into_response()
        }
        Err(err @ PictureError::Encode(_)) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found: the dashboard serves / and /api/picture\n").into_response()
}

/// What a connection over the limit gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n\
content-type: text/plain\r\ncontent-length: 29\r\n\r\ntoo many dashboard connections";

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    config: DashboardConfig,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    // Dropping the set at the end aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "dashboard: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(serve_connection(stream, router.clone(), config.header_read_timeout, permit));
            }
            Err(_) => {
                // Best effort and never waiting: the socket buffer of a fresh connection holds it.
                let _ = stream.try_write(REFUSED);
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router, header_timeout: Duration, _permit: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(router);
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = result {
        tracing::debug!(%err, "dashboard: connection ended with an error");
    }
}
