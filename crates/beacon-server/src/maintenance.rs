//! The one-shot data commands: `beacon prune` and `beacon forget`. Both
//! run beside running servers (see `beacon_store::Store::prune_step` and
//! `beacon_store::Store::forget_session`) and print what they deleted on
//! stdout.

use beacon_store::PruneRun;
use chrono::Utc;

use crate::clock::SystemClock;
use crate::config::{Config, ForgetArgs, PruneArgs};
use crate::{open_store, RunResult};

/// `beacon prune --before DAY`: deletes what occurred before the start of
/// that UTC day, at the retention task's pace.
pub(crate) fn prune(config: &Config, args: &PruneArgs) -> RunResult {
    let today = Utc::now().date_naive();
    if args.before > today {
        return Err(format!(
            "--before {} is after today ({today}, UTC): prune deletes only the past",
            args.before
        )
        .into());
    }
    let store = open_store(config, !config.no_migrate)?;
    let started = std::time::Instant::now();
    let mut run = PruneRun::new(args.before, store.backend());
    crate::retention::drive(&store, &mut run, &SystemClock, |pause| {
        std::thread::sleep(pause);
        true
    })?;
    let deleted = run.deleted();
    println!(
        "pruned {} events and {} sessions from before {} (UTC) in {:.1} s",
        deleted.events,
        deleted.sessions,
        args.before,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `beacon forget --session TOKEN`. The token is never printed or logged.
pub(crate) fn forget(config: &Config, args: &ForgetArgs) -> RunResult {
    let store = open_store(config, !config.no_migrate)?;
    match store.forget_session(&args.session, Utc::now())? {
        Some(forgotten) => {
            println!(
                "forgot the session and its {} events; the rollups no longer count them",
                forgotten.events
            );
            Ok(())
        }
        None => Err("no stored session has this token (nothing was deleted)".into()),
    }
}
