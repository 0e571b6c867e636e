//! Quality benchmark of Beacon's anomaly detector: generated sites from 50
//! to 500,000 page views a day, warmed from four weeks of 15-minute history
//! as the server would be, then fed twelve weeks live, five-minute interval
//! by interval, with known anomalies injected in every other week. Prints
//! recall, detection delay and false alerts per week as a Markdown table.
//!
//! `cargo run --release -p beacon-anomaly-bench -- --seed 1` (see
//! `bench/anomalies.sh` and `docs/anomalies.md`).

mod eval;
mod rng;
mod traffic;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Recall, delay and false alerts of Beacon's anomaly detector on generated traffic"
)]
struct Args {
    /// Seed of everything random; the same seed gives the same table.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sites generated per size.
    #[arg(long, default_value_t = 4)]
    sites: usize,
    /// Weeks fed live (injections in every other one).
    #[arg(long, default_value_t = 12)]
    weeks: usize,
    /// Weeks of 15-minute history the detectors are warmed with first.
    #[arg(long, default_value_t = 4)]
    warm_weeks: usize,
    /// Site sizes, page views a day.
    #[arg(long, value_delimiter = ',', default_values_t = [50u64, 200, 1_000, 5_000, 20_000, 100_000, 500_000])]
    sizes: Vec<u64>,
    /// Detector sensitivity (1 is the default).
    #[arg(long, default_value_t = 1.0)]
    sensitivity: f64,
    /// How long a spike or drop must look normal before it is closed,
    /// minutes (the detector's `quiet_after`).
    #[arg(long, default_value_t = 60)]
    quiet_minutes: u64,
    /// Mean page views per visit (geometric). Views of one visit make page
    /// views vary more than a Poisson count; 1 gives Poisson page views.
    #[arg(long, default_value_t = 2.0)]
    views_per_visit: f64,
    /// Also list every false alert (for tuning).
    #[arg(long)]
    verbose: bool,
}

fn main() {
    let args = Args::parse();
    let mut rows = Vec::new();
    for (k, &size) in args.sizes.iter().enumerate() {
        let mut total = eval::Tally::default();
        for rep in 0..args.sites {
            let seed = args.seed.wrapping_mul(1_000_003) + (k * 100 + rep) as u64;
            let setup = eval::Setup {
                daily: size as f64,
                seed,
                weeks: args.weeks,
                warm_weeks: args.warm_weeks,
                sensitivity: args.sensitivity,
                views_per_visit: args.views_per_visit,
                quiet_minutes: args.quiet_minutes,
                verbose: args.verbose,
            };
            match eval::run_site(&setup) {
                Ok(t) => total.add(&t),
                Err(e) => {
                    eprintln!("site of {size} views/day, seed {seed}: {e}");
                    std::process::exit(1);
                }
            }
        }
        rows.push((size, total));
    }
    println!(
        "seed {}, {} sites per size, {} weeks live after {} weeks of 15-minute history, {} page views per visit, sensitivity {}\n",
        args.seed, args.sites, args.weeks, args.warm_weeks, args.views_per_visit, args.sensitivity
    );
    print!("{}", eval::table(&rows));
}
