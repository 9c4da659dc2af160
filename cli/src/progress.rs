//! Progress on stderr: a bar on a terminal (bytes, percent, speed, ETA, mode, requests in flight), plain lines every
//! few seconds otherwise (a CI log, a pipe), nothing with `--quiet`. Speed and ETA count only what this run sent,
//! not what the server held before a resume.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chunked_upload::upload::Event;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Display {
    name: String,
    shown: Shown,
    stats: Mutex<Stats>,
}

enum Shown {
    Nothing,
    Bar(ProgressBar),
    Lines,
}

struct Stats {
    mode: &'static str,
    total: u64,
    done: u64,
    /// Bytes the server held before this run.
    held: u64,
    in_flight: usize,
    started: Instant,
    printed: Instant,
}

impl Display {
    pub fn new(file: &Path, quiet: bool) -> Display {
        let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
        let shown = if quiet {
            Shown::Nothing
        } else if std::io::stderr().is_terminal() {
            // Drawn once the upload has started and its size is known.
            let bar = ProgressBar::hidden();
            let style = ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {percent:>3}% {msg}",
            )
            .map(|s| s.progress_chars("=> "));
            bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_prefix(name.clone());
            Shown::Bar(bar)
        } else {
            Shown::Lines
        };
        let now = Instant::now();
        let stats = Stats { mode: "", total: 0, done: 0, held: 0, in_flight: 0, started: now, printed: now };
        Display { name, shown, stats: Mutex::new(stats) }
    }

    pub fn event(&self, event: Event) {
        if matches!(self.shown, Shown::Nothing) {
            return;
        }
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let note = match event {
            Event::Started { mode, upload_id, total, held } => {
                (stats.mode, stats.total, stats.done, stats.held) = (mode.as_str(), total, held, held);
                stats.started = Instant::now();
                if let Shown::Bar(bar) = &self.shown {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.set_length(total);
                    bar.enable_steady_tick(Duration::from_millis(200));
                }
                let resumed = if held > 0 { format!(", resuming at {held} bytes") } else { String::new() };
                Some(format!("{} mode, upload {upload_id}, {total} bytes{resumed}", mode.as_str()))
            }
            Event::Sent { bytes } => {
                stats.done += bytes;
                let due = stats.printed.elapsed() >= LINE_EVERY;
                if due {
                    stats.printed = Instant::now();
                }
                (due && matches!(self.shown, Shown::Lines)).then(|| stats.describe())
            }
            Event::InFlight(n) => {
                stats.in_flight = n;
                None
            }
            Event::StartingOver { reason } => Some(format!("{reason}; starting over")),
            Event::Completing => {
                stats.mode = "completing";
                matches!(self.shown, Shown::Lines).then(|| format!("{}, completing", stats.describe()))
            }
        };
        match &self.shown {
            Shown::Bar(bar) => {
                bar.set_position(stats.done);
                bar.set_message(stats.brief());
                // Above the bar; suspend also works before the bar is first drawn, where its println would not.
                if let Some(note) = note {
                    bar.suspend(|| eprintln!("{}: {note}", self.name));
                }
            }
            _ => {
                if let Some(note) = note {
                    eprintln!("{}: {note}", self.name);
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Shown::Bar(bar) = &self.shown {
            bar.finish_and_clear();
        }
    }

    pub fn abandon(&self) {
        if let Shown::Bar(bar) = &self.shown {
            bar.abandon();
        }
    }
}

impl Stats {
    /// Bytes a second this run, and seconds left at that rate.
    fn rate_and_eta(&self) -> (f64, Option<f64>) {
        let rate = (self.done - self.held) as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let eta = (rate > 0.0).then(|| (self.total - self.done) as f64 / rate);
        (rate, eta)
    }

    /// For the bar: speed, ETA, mode and requests in flight.
    fn brief(&self) -> String {
        let (rate, eta) = self.rate_and_eta();
        let eta = eta.map_or_else(|| "?".to_string(), |s| format!("{s:.0}s"));
        format!("{:.1} MiB/s ETA {eta} {} · {} in flight", rate / (1024.0 * 1024.0), self.mode, self.in_flight)
    }

    /// For a plain line.
    fn describe(&self) -> String {
        let (rate, eta) = self.rate_and_eta();
        let percent = self.done as f64 * 100.0 / self.total.max(1) as f64;
        let eta = eta.map_or_else(|| "?".to_string(), |s| format!("{s:.0} s"));
        format!(
            "{percent:.0}% ({} of {} bytes), {:.1} MiB/s, ETA {eta}, {} in flight ({})",
            self.done,
            self.total,
            rate / (1024.0 * 1024.0),
            self.in_flight,
            self.mode
        )
    }
}
