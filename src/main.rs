//! The `beacon` binary: parse the configuration, start logging, hand over to
//! `beacon-server`, report how it stopped.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = beacon_server::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match beacon_server::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("beacon stopped: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
