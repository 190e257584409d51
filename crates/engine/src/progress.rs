//! How `carve up` and `carve down` show their steps: a spinner per step on a terminal
//! (indicatif), plain lines otherwise.

use crate::engine::Event;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Renders [`Event`]s on stderr.
pub struct Display {
    bar: Option<ProgressBar>,
    tty: bool,
    /// Whether a step failed.
    pub failed: bool,
}

impl Default for Display {
    fn default() -> Self {
        Self::new()
    }
}

impl Display {
    /// A display on stderr.
    pub fn new() -> Self {
        Display {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            failed: false,
        }
    }

    /// Shows one event.
    pub fn show(&mut self, e: &Event) {
        match e {
            Event::Step { what } => {
                if self.tty {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(what.clone());
                    bar.enable_steady_tick(Duration::from_millis(80));
                    self.bar = Some(bar);
                } else {
                    eprintln!("… {what}");
                }
            }
            Event::Done { what, ms } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                eprintln!("✓ {what} ({ms} ms)");
            }
            Event::Failed { what, error } => {
                self.failed = true;
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                eprintln!("✗ {what}: {error}");
            }
            Event::Info { text } => match &self.bar {
                Some(b) => b.println(text),
                None => eprintln!("  {text}"),
            },
        }
    }
}
