#![doc = include_str!("../README.md")]

pub mod alerts;
mod anomalies;
pub mod anomaly_worker;
mod app;
pub mod assets;
pub mod auth;
pub mod buffer;
pub mod clock;
pub mod config;
mod enrich;
mod error;
pub mod health;
pub mod ingest;
pub mod intake;
pub mod live;
mod maintenance;
mod rate_limit;
mod retention;
mod rollups;
pub mod routes;
pub mod session_cookie;
mod state;
mod tasks;

pub use app::{open_store, Application, StartError, StopHandle};
pub use config::{Cli, Command, Config};
pub use error::ApiError;
pub use state::AppState;

/// Runs a command of the `beacon` binary to completion.
pub fn run(cli: Cli) -> RunResult {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let store = open_store(&cli.config, false)?;
            let applied = store.run_migrations()?;
            log::info!(
                "{} migration(s) applied on {}{}",
                applied.len(),
                cli.config.database_url.masked(),
                if applied.is_empty() {
                    String::new()
                } else {
                    format!(": {}", applied.join(", "))
                }
            );
            Ok(())
        }
        Command::Rollup(args) => {
            if !args.rebuild {
                return Err(
                    "nothing to do: `beacon rollup --rebuild` recomputes the rollups".into(),
                );
            }
            let store = open_store(&cli.config, !cli.config.no_migrate)?;
            let started = std::time::Instant::now();
            log::info!("rebuilding rollups from events (ingestion waits meanwhile)");
            store.rebuild_rollups()?;
            log::info!(
                "rollups rebuilt in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Anomalies(config::AnomaliesCommand::Replay(args)) => anomalies::replay(&args),
        Command::Prune(args) => maintenance::prune(&cli.config, &args),
        Command::Forget(args) => maintenance::forget(&cli.config, &args),
        Command::Serve => actix_web::rt::System::new().block_on(async move {
            let app = Application::build(cli.config).await?;
            app.run_until_stopped().await?;
            Ok(())
        }),
    }
}

/// How a command of the `beacon` binary ended: whatever stopped it.
pub type RunResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
