//! Progress within one long piece of work: the Adam steps of a denoiser's training, the points a
//! sampler has finished. The command that runs the work sets a [`Watch`] for the current thread
//! ([`watching`]); the code that does the work reads it once ([`current`]) and reports to it.
//! A watch shows the latest report as the message of the command's progress bar (a terminal), or
//! writes a plain line at most once a minute (a log file, a batch job's output), so that a run of
//! one hour-long generation shows more than `0/1 generations`. Reporting draws nothing random
//! and changes no result.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a watch writes a line when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How often a watch updates its bar's message.
const DRAW_EVERY: Duration = Duration::from_millis(200);

thread_local! {
    static CURRENT: RefCell<Option<Arc<Watch>>> = const { RefCell::new(None) };
}

/// Where the reports of one piece of work go: the message of `bar` (drawn only on a terminal)
/// and, when stderr is not a terminal, a line on stderr at most every [`LOG_EVERY`].
pub struct Watch {
    /// What the work is, e.g. `seed 0, generation 3`; empty for a command's single piece.
    label: String,
    bar: indicatif::ProgressBar,
    state: Mutex<State>,
    /// When a line was last written, shared by a watch and its parts; none when no lines are
    /// written.
    last_log: Option<Arc<Mutex<Instant>>>,
}

struct State {
    /// The phase being reported and when its first report came.
    phase: &'static str,
    phase_start: Instant,
    last_draw: Option<Instant>,
    /// The largest count of the phase reported so far.
    done: u64,
}

impl Watch {
    /// A watch that reports to `bar` (its message) and, when stderr is not a terminal and `log`
    /// is set, as plain lines on stderr.
    pub fn new(label: impl Into<String>, bar: indicatif::ProgressBar, log: bool) -> Arc<Watch> {
        let log = log && !std::io::stderr().is_terminal();
        let last_log = log.then(|| Arc::new(Mutex::new(Instant::now())));
        Watch::with_log(label.into(), bar, last_log)
    }

    fn with_log(
        label: String,
        bar: indicatif::ProgressBar,
        last_log: Option<Arc<Mutex<Instant>>>,
    ) -> Arc<Watch> {
        Arc::new(Watch {
            label,
            bar,
            state: Mutex::new(State {
                phase: "",
                phase_start: Instant::now(),
                last_draw: None,
                done: 0,
            }),
            last_log,
        })
    }

    /// A watch on the same bar for a part of this one's work, labelled `label` after this
    /// one's label.
    pub fn part(&self, label: &str) -> Arc<Watch> {
        let label = match self.label.as_str() {
            "" => label.to_string(),
            own => format!("{own}, {label}"),
        };
        Watch::with_log(label, self.bar.clone(), self.last_log.clone())
    }

    /// Reports that `done` of `total` `unit`s of `phase` (training, sampling) are finished; a
    /// `total` of 0 reports the phase alone. The phase's time counts from its first report, so
    /// work reports `done` = 0 when it starts. A count below one already reported for the phase
    /// (parallel workers finishing out of order) is not shown.
    pub fn report(&self, phase: &'static str, done: u64, total: u64, unit: &str) {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else { return };
        if s.phase != phase {
            s.phase = phase;
            s.phase_start = now;
            s.last_draw = None;
            s.done = 0;
        }
        if done < s.done {
            return;
        }
        s.done = done;
        let draw = s
            .last_draw
            .is_none_or(|t| now - t >= DRAW_EVERY || done == total);
        let mut last_log = self.last_log.as_ref().and_then(|t| t.lock().ok());
        let log = last_log.as_ref().is_some_and(|t| now - **t >= LOG_EVERY);
        if !draw && !log {
            return;
        }
        let what = match total {
            0 => phase.to_string(),
            _ => format!("{phase} {done}/{total} {unit}"),
        };
        let head = match self.label.as_str() {
            "" => what,
            label => format!("{label}: {what}"),
        };
        if draw {
            s.last_draw = Some(now);
            self.bar.set_message(head.clone());
        }
        if let (true, Some(t)) = (log, last_log.as_mut()) {
            **t = now;
            let pct = match total {
                0 => String::new(),
                _ => format!(" ({:.0}%)", 100.0 * done as f64 / total as f64),
            };
            let minutes = (now - s.phase_start).as_secs_f64() / 60.0;
            eprintln!("{head}{pct}, {minutes:.1} min into {phase}");
        }
    }
}

/// Runs `f` with `watch` as the current thread's watch (none: no reports), then restores the
/// one before.
pub fn watching<R>(watch: Option<Arc<Watch>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Watch>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(watch)));
    f()
}

/// The current thread's watch, if a command set one.
pub fn current() -> Option<Arc<Watch>> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_is_the_innermost_one_set_and_is_restored_after() {
        let bar = indicatif::ProgressBar::hidden();
        let outer = Watch::new("outer", bar.clone(), false);
        assert!(current().is_none());
        watching(Some(outer.clone()), || {
            assert_eq!(current().unwrap().label, "outer");
            let inner = outer.part("generation 2");
            watching(Some(inner), || {
                assert_eq!(current().unwrap().label, "outer, generation 2");
            });
            assert_eq!(current().unwrap().label, "outer");
        });
        assert!(current().is_none());
    }

    #[test]
    fn a_report_becomes_the_bar_message() {
        let bar = indicatif::ProgressBar::hidden();
        let w = Watch::new("seed 0", bar.clone(), false).part("generation 1");
        w.report("training", 1, 8000, "steps");
        assert_eq!(bar.message(), "seed 0, generation 1: training 1/8000 steps");
        // the last report of a phase is drawn whenever it comes
        w.report("training", 8000, 8000, "steps");
        assert_eq!(
            bar.message(),
            "seed 0, generation 1: training 8000/8000 steps"
        );
        w.report("sampling", 512, 5000, "points");
        assert_eq!(
            bar.message(),
            "seed 0, generation 1: sampling 512/5000 points"
        );
        w.report("sampling", 5000, 5000, "points");
        // a worker that finished before the last one but reports after it
        w.report("sampling", 4744, 5000, "points");
        assert_eq!(
            bar.message(),
            "seed 0, generation 1: sampling 5000/5000 points"
        );
    }
}
