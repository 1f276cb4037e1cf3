//! `--host`, `--hosts` and the ssh options, checked into the engine's
//! [`Hosts`] in one place: every mistake is a usage error (exit 2) that
//! names the flag or the file and line.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use callpool_pool::options::{HostPlan, Hosts, SshSettings};

use super::workers::{command_line, http_worker_flag, http_worker_options};
use crate::cli;

/// The hosts of the run, or `None` when no `--host` or `--hosts` is given
/// (every worker on this machine, as before). A host without `N/` runs
/// `--workers` workers. (`--threads` with hosts is refused before, by
/// `workers::conflicts`.)
pub(crate) fn hosts(args: &cli::Args) -> anyhow::Result<Option<Hosts>> {
    let mut entries: Vec<(String, String)> = args
        .host
        .iter()
        .map(|h| (h.clone(), format!("--host {h}")))
        .collect();
    if let Some(file) = &args.hosts_file {
        entries.extend(read_hosts_file(file)?);
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let mut list: Vec<HostPlan> = Vec::new();
    let mut seen = HashSet::new();
    for (entry, place) in &entries {
        let plan = parse_entry(entry, usize::from(args.workers))
            .with_context(|| format!("{place}: not a host"))?;
        if !seen.insert(plan.name.clone()) {
            bail!(
                "{place}: host {} is given twice; give it once, with the number of workers it should run (N/{})",
                plan.name,
                plan.name
            );
        }
        list.push(plan);
    }
    let remote = list.iter().any(|h| !h.is_local());
    if remote && args.max_worker_rss.is_some() {
        bail!(
            "--max-worker-rss reads each worker's memory from /proc on this machine, which cannot see workers on other hosts: drop it, or use --worker-memory-limit (the http-worker applies it on its host)"
        );
    }
    let ssh = command_line(
        &args.ssh,
        "--ssh",
        "give the program and its options, e.g. --ssh \"ssh -p 2222 -i ~/.ssh/key\"",
    )?;
    if remote && !on_path(&ssh[0]) {
        bail!(
            "--ssh: `{}` was not found{}: install the OpenSSH client (apt-get install openssh-client) or give its path with --ssh",
            ssh[0],
            if ssh[0].contains('/') { "" } else { " on PATH" }
        );
    }
    if let (Some(_), Some(flag), false) = (
        &args.remote_worker_cmd,
        http_worker_flag(args),
        list.iter().any(HostPlan::is_local),
    ) {
        bail!(
            "{flag} is an option of the http-worker, which --remote-worker-cmd replaces on every host here: give it to your worker program in --remote-worker-cmd instead"
        );
    }
    let command = match &args.remote_worker_cmd {
        Some(cmd) => command_line(
            cmd,
            "--remote-worker-cmd",
            "give the program and its arguments",
        )?,
        None => {
            let mut argv = vec!["http-worker".to_string()];
            argv.extend(http_worker_options(args)?);
            argv
        }
    };
    // The remote login shell may be fish or tcsh, whose quoting differs
    // from sh's on exactly these.
    if remote && let Some(word) = command.iter().find(|w| w.contains(['!', '\\'])) {
        bail!(
            "the remote worker command has {word:?}: a `!` or a backslash is read differently by some login shells (tcsh, fish), so it cannot be sent safely; rename the file or drop it from --remote-worker-cmd"
        );
    }
    Ok(Some(Hosts {
        list,
        ssh: SshSettings {
            ssh,
            command,
            delay: args.ssh_delay,
            sessions: usize::from(args.ssh_sessions),
        },
    }))
}

/// `[N/]DEST`: N workers on DEST, or `default` of them.
fn parse_entry(entry: &str, default: usize) -> anyhow::Result<HostPlan> {
    let entry = entry.trim();
    let (workers, dest) = match entry.split_once('/') {
        Some((n, dest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            let workers: usize = n
                .parse()
                .ok()
                .filter(|w| (1..=4096).contains(w))
                .with_context(|| format!("{n:?} workers: give 1 to 4096 before the /"))?;
            (workers, dest)
        }
        _ => (default, entry),
    };
    if dest.is_empty() {
        bail!("no destination after the workers: give [N/]DEST, e.g. 8/user@host or 4/:");
    }
    // ssh would read it as an option.
    if dest.starts_with('-') {
        bail!("{dest:?} starts with '-', which ssh would read as an option");
    }
    if dest.chars().any(char::is_whitespace) {
        bail!("{dest:?} has a space in it; give one destination per entry");
    }
    Ok(HostPlan {
        name: dest.to_string(),
        workers,
    })
}

/// The entries of a `--hosts` file, each with its `FILE:LINE`.
fn read_hosts_file(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--hosts {}: cannot read it", file.display()))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        entries.push((line.to_string(), format!("{}:{}", file.display(), i + 1)));
    }
    if entries.is_empty() {
        bail!(
            "--hosts {}: no hosts in it (one [N/]DEST per line; # starts a comment)",
            file.display()
        );
    }
    Ok(entries)
}

/// Whether `program` can be run: a path that exists, or a name on PATH.
fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let h = parse_entry("4/user@alpha", 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.workers, h.name.as_str()), (4, "user@alpha"));
        let h = parse_entry("ssh://root@10.0.0.1:2222", 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (h.workers, h.name.as_str()),
            (8, "ssh://root@10.0.0.1:2222")
        );
        let h = parse_entry("2/:", 8).unwrap_or_else(|e| panic!("{e}"));
        assert!(h.is_local());
        assert!(parse_entry("0/alpha", 8).is_err());
        assert!(parse_entry("3/", 8).is_err());
        assert!(parse_entry("-oProxyCommand=x", 8).is_err());
    }
}
