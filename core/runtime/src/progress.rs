//! Progress display: an indicatif bar per epoch (batches, running loss, ETA), hidden when
//! progress is off or stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::cell::Cell;

/// A per-epoch progress bar implementing the plugin-facing [`pulse_api::Progress`].
pub struct EpochBar {
    bar: ProgressBar,
    label: String,
    loss_sum: Cell<f64>,
    batches: Cell<u64>,
}

impl EpochBar {
    pub fn new(show: bool, label: String) -> Self {
        let bar = if show {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{prefix:.bold} [{bar:28.cyan/blue}] {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            label,
            loss_sum: Cell::new(0.0),
            batches: Cell::new(0),
        }
    }

    /// Starts epoch `epoch` of `total`.
    pub fn epoch(&self, epoch: usize, total: usize) {
        self.bar.reset();
        self.loss_sum.set(0.0);
        self.batches.set(0);
        self.bar.set_message("");
        self.bar
            .set_prefix(format!("{} epoch {epoch}/{total}", self.label));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl pulse_api::Progress for EpochBar {
    fn start(&self, total_batches: u64) {
        self.bar.set_length(total_batches);
    }

    fn advance(&self, batches: u64, loss: f64) {
        self.loss_sum
            .set(self.loss_sum.get() + loss * batches as f64);
        self.batches.set(self.batches.get() + batches);
        let mean = self.loss_sum.get() / self.batches.get().max(1) as f64;
        self.bar.set_message(format!("loss {mean:.4}"));
        self.bar.inc(batches);
    }
}
