//! What the workers are and how many: `--workers`, `--threads` /
//! `--isolation`, `--worker-cmd` and the options of the built-in
//! http-worker (`--max-body`, `--location-trusted`, `--cacert`, `--cert`,
//! `--key`), checked and turned into the engine's [`Isolation`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use callpool_http::{Client, ClientConfig, DEFAULT_MAX_BODY, DEFAULT_USER_AGENT, Tls};
use callpool_pool::options::Hosts;
use callpool_pool::{Isolation, JobFn, ThreadWork};
use callpool_protocol::JobRequest;

use crate::cli;

/// What a worker is: `--threads` and `--isolation threads` say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerKind {
    /// A child process per worker (the default).
    Processes,
    /// A thread per worker inside the supervisor, running the built-in
    /// HTTP worker.
    Threads,
}

impl WorkerKind {
    pub(crate) fn of(args: &cli::Args) -> Self {
        if args.threads || args.isolation == Some(cli::IsolationKind::Threads) {
            WorkerKind::Threads
        } else {
            WorkerKind::Processes
        }
    }
}

/// How many workers run at once: `--workers`, or with `--host` the sum of
/// the hosts' (each host's `N/`, which is `--workers` when not given; see
/// `hosts.rs`).
pub(crate) fn count(workers: u16, hosts: Option<&Hosts>) -> usize {
    hosts.map_or(usize::from(workers), |h| {
        h.list.iter().map(|p| p.workers).sum()
    })
}

/// The worker options that cannot go together, whatever the files they
/// name hold: checked before any of those files is read. (The pairs that
/// clap refuses are in cli.rs; the ones that depend on which hosts are
/// remote are in hosts.rs.)
pub(crate) fn conflicts(args: &cli::Args, kind: WorkerKind) -> anyhow::Result<()> {
    match kind {
        WorkerKind::Threads => {
            for (flag, given) in [
                ("--max-worker-rss", args.max_worker_rss.is_some()),
                ("--worker-memory-limit", args.worker_memory_limit.is_some()),
            ] {
                if given {
                    bail!(
                        "{flag} limits each worker process's memory; worker threads share the supervisor's, which no per-worker limit can measure or cap: drop --threads or {flag}"
                    );
                }
            }
            if args.worker_cmd.is_some() {
                bail!(
                    "--threads runs the built-in HTTP worker on threads inside the supervisor; a --worker-cmd program can only run as separate processes: drop --threads or --worker-cmd"
                );
            }
            if !args.host.is_empty() || args.hosts_file.is_some() {
                bail!(
                    "--host runs worker processes on other hosts; --threads runs workers inside the supervisor: drop one of them"
                );
            }
        }
        WorkerKind::Processes => {
            if let (Some(_), Some(flag)) = (&args.worker_cmd, http_worker_flag(args)) {
                bail!(
                    "{flag} is an option of the built-in http-worker, which --worker-cmd replaces: give it to your worker program in --worker-cmd instead"
                );
            }
        }
    }
    Ok(())
}

/// What the workers are: threads running the built-in HTTP worker, or
/// processes running `--worker-cmd` or the http-worker next to us. Call
/// [`conflicts`] first.
pub(crate) fn isolation(args: &cli::Args, kind: WorkerKind) -> anyhow::Result<Isolation> {
    let config = client_config(args);
    match kind {
        WorkerKind::Processes => {
            // Each http-worker reads its TLS settings again; checked here
            // first, so that a bad one is a usage error and not a worker
            // that fails to start, over and over.
            if args.worker_cmd.is_none() {
                checked_tls(&config)?;
            }
            Ok(Isolation::Processes {
                argv: worker_command(args)?,
                sets_own_death_signal: args.worker_cmd.is_none(),
                memory_limit: args.worker_memory_limit,
            })
        }
        WorkerKind::Threads => {
            // Read once here and shared by every thread's client.
            let tls = checked_tls(&config)?;
            Ok(Isolation::Threads(ThreadWork::new(
                "the built-in HTTP worker",
                move |_slot| {
                    // One agent (connection pool) per thread, as per process.
                    let client =
                        Client::with_tls(config.clone(), &tls).map_err(|e| e.to_string())?;
                    Ok(Box::new(move |req: &JobRequest| client.execute(req)) as JobFn)
                },
            )))
        }
    }
}

/// The TLS files and the trust store of `config`, read and checked, and a
/// client built with them (which checks the rest of `config`).
fn checked_tls(config: &ClientConfig) -> anyhow::Result<Tls> {
    let tls = Tls::load(config)?;
    tls.load_trust_store()?;
    Client::with_tls(config.clone(), &tls)?;
    Ok(tls)
}

/// The worker program: `--worker-cmd`, or the http-worker next to us.
fn worker_command(args: &cli::Args) -> anyhow::Result<Vec<String>> {
    if let Some(cmd) = &args.worker_cmd {
        return command_line(
            cmd,
            "--worker-cmd",
            "give the program and its arguments, e.g. --worker-cmd \"python3 worker.py --fast\"",
        );
    }
    let exe = std::env::current_exe().context(
        "cannot find this executable's path to start the http-worker beside it; give --worker-cmd",
    )?;
    let worker: PathBuf = exe.with_file_name("http-worker");
    if !worker.exists() {
        bail!(
            "the http-worker was not found at {}: it is built beside the supervisor (cargo build --release builds both); build it, or give --worker-cmd",
            worker.display()
        );
    }
    let mut argv = vec![worker.to_string_lossy().into_owned()];
    argv.extend(http_worker_options(args)?);
    Ok(argv)
}

/// `text` split as sh would into a program and its arguments, or an
/// error naming `flag` and ending with `hint`.
pub(crate) fn command_line(text: &str, flag: &str, hint: &str) -> anyhow::Result<Vec<String>> {
    shlex::split(text)
        .filter(|v| !v.is_empty())
        .with_context(|| {
            format!("{flag} {text:?} is not a command line (an unbalanced quote?); {hint}")
        })
}

/// The http-worker's options that follow the supervisor's.
pub(crate) fn http_worker_options(args: &cli::Args) -> anyhow::Result<Vec<String>> {
    let mut argv = Vec::new();
    if let Some(max) = args.max_body {
        argv.push("--max-body".into());
        argv.push(max.to_string());
    }
    if args.location_trusted {
        argv.push("--location-trusted".into());
    }
    for (flag, path) in tls_options(args) {
        // Absolute, so that they name the same files whatever the worker's
        // folder; checked to be readable by `checked_tls`.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(text) = path.to_str() else {
            bail!(
                "{flag} {}: the http-worker gets its options as text, and this path is not valid UTF-8: rename the file",
                path.display()
            );
        };
        argv.push(flag.into());
        argv.push(text.into());
    }
    Ok(argv)
}

/// The built-in HTTP worker's settings, as in each http-worker process.
fn client_config(args: &cli::Args) -> ClientConfig {
    ClientConfig {
        max_body: args.max_body.unwrap_or(DEFAULT_MAX_BODY),
        user_agent: DEFAULT_USER_AGENT.to_owned(),
        ca_file: args.cacert.clone(),
        cert_file: args.cert.clone(),
        key_file: args.key.clone(),
        location_trusted: args.location_trusted,
    }
}

/// The TLS options given (`--cacert`, `--cert`, `--key`), with their files.
fn tls_options(args: &cli::Args) -> Vec<(&'static str, &Path)> {
    [
        ("--cacert", &args.cacert),
        ("--cert", &args.cert),
        ("--key", &args.key),
    ]
    .into_iter()
    .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
    .collect()
}

/// The first option given that only the http-worker takes, if any.
pub(crate) fn http_worker_flag(args: &cli::Args) -> Option<&'static str> {
    tls_options(args)
        .first()
        .map(|(f, _)| *f)
        .or(args.max_body.map(|_| "--max-body"))
        .or(args.location_trusted.then_some("--location-trusted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpool_pool::options::{HostPlan, SshSettings};
    use clap::Parser;

    fn args(words: &[&str]) -> cli::Args {
        let mut all = vec!["supervisor"];
        all.extend(words);
        all.push("jobs.jsonl");
        cli::Args::try_parse_from(all).unwrap_or_else(|e| panic!("{e}"))
    }

    fn conflict(words: &[&str]) -> String {
        let a = args(words);
        match conflicts(&a, WorkerKind::of(&a)) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn threads_and_isolation_threads_are_the_same() {
        assert_eq!(WorkerKind::of(&args(&[])), WorkerKind::Processes);
        assert_eq!(WorkerKind::of(&args(&["--threads"])), WorkerKind::Threads);
        let a = args(&["--isolation", "threads"]);
        assert_eq!(WorkerKind::of(&a), WorkerKind::Threads);
        let a = args(&["--isolation", "processes"]);
        assert_eq!(WorkerKind::of(&a), WorkerKind::Processes);
    }

    #[test]
    fn the_worker_count_is_workers_or_the_hosts_sum() {
        assert_eq!(count(8, None), 8);
        let plan = |name: &str, workers| HostPlan {
            name: name.into(),
            workers,
        };
        let hosts = Hosts {
            list: vec![plan("a", 3), plan(":", 5)],
            ssh: SshSettings {
                ssh: vec!["ssh".into()],
                command: vec!["http-worker".into()],
                delay: std::time::Duration::ZERO,
                sessions: 10,
            },
        };
        assert_eq!(count(8, Some(&hosts)), 8);
        assert_eq!(
            count(2, Some(&hosts)),
            8,
            "--workers is only each host's default"
        );
    }

    #[test]
    fn threads_refuse_per_process_options_a_worker_program_and_hosts() {
        for flag in ["--max-worker-rss", "--worker-memory-limit"] {
            let e = conflict(&["--threads", flag, "100MB"]);
            assert!(e.ends_with(&format!("drop --threads or {flag}")), "{e}");
        }
        let e = conflict(&["--isolation", "threads", "--worker-cmd", "w"]);
        assert!(e.ends_with("drop --threads or --worker-cmd"), "{e}");
        let e = conflict(&["--threads", "--host", "alpha"]);
        assert!(e.ends_with("drop one of them"), "{e}");
        // The built-in worker's own options are for threads too.
        assert_eq!(conflict(&["--threads", "--max-body", "1M"]), "");
    }

    #[test]
    fn a_worker_program_refuses_the_http_workers_options() {
        for (flag, value) in [
            ("--max-body", Some("1M")),
            ("--location-trusted", None),
            ("--cacert", Some("ca.pem")),
        ] {
            let mut words = vec!["--worker-cmd", "w", flag];
            words.extend(value);
            let e = conflict(&words);
            assert!(
                e.starts_with(&format!("{flag} is an option of the built-in http-worker")),
                "{e}"
            );
            words.drain(..2);
            assert_eq!(conflict(&words), "", "{flag} alone");
        }
        // Processes may go to other hosts, and may be capped.
        assert_eq!(conflict(&["--host", "alpha", "--max-worker-rss", "1G"]), "");
    }

    #[test]
    fn a_worker_command_is_split_as_sh_would() {
        let a = args(&["--worker-cmd", "python3 'my worker.py' --fast"]);
        let Ok(Isolation::Processes {
            argv,
            sets_own_death_signal,
            ..
        }) = isolation(&a, WorkerKind::Processes)
        else {
            panic!("a worker program is processes")
        };
        assert_eq!(argv, ["python3", "my worker.py", "--fast"]);
        assert!(!sets_own_death_signal, "only the http-worker sets its own");
        let a = args(&["--worker-cmd", "python3 'worker.py"]);
        let e = isolation(&a, WorkerKind::Processes)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with(
            "--worker-cmd \"python3 'worker.py\" is not a command line (an unbalanced quote?)"
        )),);
    }
}
