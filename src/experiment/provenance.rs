//! `provenance.toml`: where a folder's numbers came from. One `[[session]]` per command that
//! wrote the folder (a run, and each `--resume` that finished it): ouro's version, the command
//! line, when it started and finished, the machine's cores and processor, the threads used. It is
//! the one file of a folder that differs between two runs of the same config.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// The file's name in a run, study, reconstruction or reproduction folder.
pub const FILE: &str = "provenance.toml";

/// One command that wrote the folder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// ouro's version.
    pub ouro: String,
    /// The command line, quoted for a POSIX shell.
    pub command: String,
    /// The folder the command ran in.
    pub cwd: String,
    /// UTC, RFC 3339.
    pub started: String,
    /// UTC, RFC 3339.
    pub finished: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The logical cores the machine offered.
    pub cores: usize,
    /// The worker threads the command used (its `--threads`, 0 meaning all cores).
    pub threads: usize,
    /// The processor's model name (Linux's /proc/cpuinfo), empty where unknown.
    pub cpu: String,
}

/// The sessions of a folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// In the order they ran.
    #[serde(default)]
    pub session: Vec<Session>,
}

/// A command under way: when it started.
pub struct Started {
    wall: SystemTime,
    clock: Instant,
}

impl Started {
    /// Now.
    pub fn now() -> Started {
        Started {
            wall: SystemTime::now(),
            clock: Instant::now(),
        }
    }

    /// The session of this process's command line, finishing now, with `threads` requested.
    pub fn finish(&self, threads: usize) -> Session {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Session {
            ouro: env!("CARGO_PKG_VERSION").to_string(),
            command: command_line(std::env::args()),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            started: humantime::format_rfc3339_seconds(self.wall).to_string(),
            finished: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            seconds: (self.clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            cores,
            threads: if threads == 0 { cores } else { threads },
            cpu: cpu_name(),
        }
    }
}

/// The processor's model name from /proc/cpuinfo (empty where there is none).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// `args` joined into one line a POSIX shell reads back as the same words.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut words: Vec<String> = args.into_iter().collect();
    if let Some(first) = words.first_mut()
        && let Some(name) = Path::new(first.as_str()).file_name()
        && name == "ouro"
    {
        *first = "ouro".into();
    }
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The provenance of `dir` (empty when it has none).
pub fn read(dir: &Path) -> Result<Provenance> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| Error::data(&path, format!("not a provenance file written by ouro: {e}"))),
        Err(_) => Ok(Provenance::default()),
    }
}

/// Adds `session` to the provenance of `dir`.
pub fn append(dir: &Path, session: Session) -> Result<()> {
    let mut p = read(dir).unwrap_or_default();
    p.session.push(session);
    let text = toml::to_string(&p).map_err(|e| Error::Run(format!("provenance: {e}")))?;
    super::run_dir::write_file(&dir.join(FILE), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let args = [
            "/x/target/release/ouro",
            "run",
            "a b.toml",
            "--set",
            "m.names=[\"x\"]",
            "it's",
        ];
        assert_eq!(
            command_line(args.map(String::from)),
            r#"ouro run 'a b.toml' --set 'm.names=["x"]' 'it'\''s'"#
        );
    }

    #[test]
    fn sessions_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Started::now().finish(2);
        append(dir.path(), s.clone()).unwrap();
        append(dir.path(), s.clone()).unwrap();
        let p = read(dir.path()).unwrap();
        assert_eq!(p.session, vec![s.clone(), s]);
        assert_eq!(p.session[0].threads, 2);
        assert!(p.session[0].started.ends_with('Z'));
    }
}
