//! The HTTP server: the listener, and actix's server over the route table.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use beacon_model::Limits;

use super::StartError;
use crate::config::Config;
use crate::routes::{self, Origins};
use crate::state::AppState;

/// Binds the listen address (port 0 picks a free port); returns the
/// listener and its port.
pub(super) fn bind(addr: SocketAddr) -> Result<(TcpListener, u16), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    Ok((listener, port))
}

/// The server on `listener`, serving the route table with `state`; it runs
/// once awaited.
pub(super) fn serve(
    listener: TcpListener,
    state: AppState,
    config: &Config,
) -> Result<Server, StartError> {
    let state = web::Data::new(state);
    let origins = Origins {
        ingest: config.allowed_origins.clone(),
        dashboard: config.dashboard_origins.clone(),
    };
    let workers = if config.http_workers > 0 {
        config.http_workers
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(Limits::default().max_body_bytes))
            .configure(|cfg| routes::configure(cfg, &origins))
    })
    // Signals are handled in `run_until_stopped`, which closes the streams
    // first: open streams would otherwise hold up the graceful stop for its
    // whole timeout.
    .disable_signals()
    .shutdown_timeout(10)
    .client_request_timeout(config.request_timeout)
    .client_disconnect_timeout(Duration::from_secs(2))
    .workers(workers)
    .max_connections((config.max_connections as usize).div_ceil(workers));
    let server = server
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?
        .run();
    Ok(server)
}
