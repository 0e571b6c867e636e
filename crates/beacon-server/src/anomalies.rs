//! `beacon anomalies replay`: the detector of `beacon-metrics` over a
//! recorded series, printed as JSON lines. No server, no database.

use std::io::Write;

use beacon_metrics::anomaly::{replay as run_replay, DetectorConfig};

use crate::config::ReplayArgs;
use crate::RunResult;

/// Reads `args.input`, replays it and prints one JSON object per anomaly
/// opened, in order.
pub(crate) fn replay(args: &ReplayArgs) -> RunResult {
    let csv = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let lines = run_replay(&csv, args.step, DetectorConfig::default())
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
