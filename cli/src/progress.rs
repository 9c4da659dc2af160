//! Progress on stderr: a bar on a terminal (bytes, percent, speed, ETA, mode, requests in flight), plain lines every
//! few seconds otherwise (a CI log, a pipe), nothing with `--quiet`.

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
}

enum Shown {
    Nothing,
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

struct Lines {
    mode: &'static str,
    total: u64,
    done: u64,
    /// Bytes the server held before this run: not counted in the speed.
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
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {percent:>3}% \
                 {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .map(|s| s.progress_chars("=> "));
            bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_prefix(name.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            Shown::Bar(bar)
        } else {
            let now = Instant::now();
            Shown::Lines(Mutex::new(Lines {
                mode: "",
                total: 0,
                done: 0,
                held: 0,
                in_flight: 0,
                started: now,
                printed: now,
            }))
        };
        Display { name, shown }
    }

    pub fn event(&self, event: Event) {
        match &self.shown {
            Shown::Nothing => {}
            Shown::Bar(bar) => match event {
                Event::Started { mode, upload_id, total, held } => {
                    bar.set_length(total);
                    bar.set_position(held);
                    bar.reset_eta();
                    bar.set_message(mode.as_str());
                    if held > 0 {
                        bar.println(format!("{}: resuming upload {upload_id} at {held} of {total} bytes", self.name));
                    }
                }
                Event::Sent { bytes } => bar.inc(bytes),
                Event::InFlight(n) => {
                    let mode = bar.message().split(' ').next().unwrap_or_default().to_string();
                    bar.set_message(format!("{mode} · {n} in flight"));
                }
                Event::StartingOver { reason } => bar.println(format!("{}: {reason}; starting over", self.name)),
                Event::Completing => bar.set_message("completing"),
            },
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match event {
                    Event::Started { mode, upload_id, total, held } => {
                        (lines.mode, lines.total, lines.done, lines.held) = (mode.as_str(), total, held, held);
                        lines.started = Instant::now();
                        let resumed = if held > 0 { format!(", resuming at {held} bytes") } else { String::new() };
                        eprintln!("{}: {} mode, upload {upload_id}, {total} bytes{resumed}", self.name, mode.as_str());
                    }
                    Event::Sent { bytes } => {
                        lines.done += bytes;
                        if lines.printed.elapsed() >= LINE_EVERY {
                            lines.printed = Instant::now();
                            eprintln!("{}: {}", self.name, lines.describe());
                        }
                    }
                    Event::InFlight(n) => lines.in_flight = n,
                    Event::StartingOver { reason } => eprintln!("{}: {reason}; starting over", self.name),
                    Event::Completing => eprintln!("{}: {}, completing", self.name, lines.describe()),
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

impl Lines {
    fn describe(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.done - self.held) as f64 / seconds;
        let percent = self.done as f64 * 100.0 / self.total.max(1) as f64;
        let eta = if rate > 0.0 { format!("{:.0} s", (self.total - self.done) as f64 / rate) } else { "?".into() };
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
