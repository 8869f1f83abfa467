//! What the long stages show while they work and how they notice a stop request: one bar style
//! for every stage (so a run's stages read alike on the terminal) and the cancel flag check.

use crate::rationale::StageOptions;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::Ordering;

/// A bar `what [====>   ] pos/len unit msg ETA`, hidden unless `opts.show_progress`.
pub(crate) fn progress_bar(opts: &StageOptions, what: &str, unit: &str, len: usize) -> ProgressBar {
    if !opts.show_progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let template =
        format!("{what} [{{bar:28.cyan/blue}}] {{pos}}/{{len}} {unit} {{msg}} ETA {{eta}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

impl StageOptions {
    /// Whether someone asked the stage to stop (Ctrl-C in the CLI).
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}
