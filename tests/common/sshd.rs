//! A real OpenSSH lab for tests of workers on other hosts: two `sshd`
//! processes on loopback addresses, "alpha" (127.0.0.2) and "beta"
//! (127.0.0.3), with throwaway keys in a fresh temporary folder and an ssh
//! client configuration that reaches them as `ssh -F CONFIG alpha`.
//!
//! What a test can rely on:
//! - both hosts run commands as root, with the http-worker built by cargo
//!   first on the PATH, so a remote command can name it `http-worker`;
//! - every process started through a host's sshd carries
//!   `CALLPOOL_TEST_HOST=<host>` (and this lab's `CALLPOOL_TEST_LAB`) in its
//!   environment, unless it clears it: that is how [`SshLab::remote_processes`]
//!   finds them, also after they were orphaned (sshd sends no signal when a
//!   session without a terminal ends, so a remote command can outlive it);
//! - the host "stranger" in the client configuration is alpha reached with a
//!   key that alpha does not accept;
//! - [`SshLab::stop_host`] is a machine dying; dropping the lab stops both
//!   hosts, so no process is left behind.
//!
//! What sshd 9.2 does, seen with this configuration (root login, no PAM):
//! - per connection the listener forks one process (a re-executed sshd, in
//!   a session of its own: it calls setsid), titled `sshd: [accepted]`
//!   before authentication, with a short-lived child `sshd: [net]` running
//!   as the `sshd` user; then `sshd: root`, and `sshd: root@notty` once it
//!   ran a session. A root login gets no separate post-authentication
//!   child: each session's command is a direct child of that process;
//! - it runs the command as `bash -c COMMAND` (root's login shell), in a
//!   new session and process group (setsid again); bash execs a lone simple
//!   command, so `ssh alpha sleep 600` shows up as `sleep 600`;
//! - the command's environment is built afresh: SHELL, PWD and HOME
//!   (/root), USER, LOGNAME, MAIL, SSH_CLIENT, SSH_CONNECTION (its client
//!   address is 127.0.0.1), then the `SetEnv` values of the configuration
//!   (PATH, the markers, SHLVL); nothing of the test's environment;
//! - when a client dies (a plain ssh, or a ControlMaster's mux client), the
//!   command gets no signal: its stdin reaches end of file and its stdout
//!   is closed (its next write gets SIGPIPE); one that does neither, like
//!   `sleep`, keeps running, orphaned when the connection's process exits.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{CEILING, HTTP_WORKER, wait_until};

/// The OpenSSH server; `.ci/run` installs it (package openssh-server).
/// sshd re-executes itself for each connection and insists on an absolute
/// path for that.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Set (to anything) to run both sshd at LogLevel VERBOSE and copy their
/// log lines to the test's stderr.
pub const DEBUG_VAR: &str = "CALLPOOL_SSHD_DEBUG";

/// The lab's hosts: name and loopback address. All of 127.0.0.0/8 is on
/// `lo` on Linux, so each host gets an address of its own without any setup,
/// and a test can tell which host a connection went to.
const HOSTS: [(&str, Ipv4Addr); 2] = [
    ("alpha", Ipv4Addr::new(127, 0, 0, 2)),
    ("beta", Ipv4Addr::new(127, 0, 0, 3)),
];

/// One running sshd.
struct Host {
    name: &'static str,
    addr: SocketAddr,
    /// The listener; `None` once the host was stopped (and the listener
    /// reaped). While it is our unreaped child its pid cannot be reused.
    child: Option<Child>,
    /// Everything sshd wrote to its stderr (its log, with `-e`).
    log: Arc<Mutex<String>>,
}

/// Two real sshd ("alpha" and "beta") in a temporary folder, stopped with
/// everything they started when dropped. See the module documentation.
pub struct SshLab {
    dir: tempfile::TempDir,
    hosts: Vec<Host>,
    /// The value of `CALLPOOL_TEST_LAB` in remote processes: this lab's
    /// folder, unique on the machine while the lab exists. Tests run in
    /// parallel, each maybe with a lab, and all have an "alpha": the host
    /// name alone would let one test see (and kill) another's processes.
    lab_id: String,
}

impl SshLab {
    /// Generates the keys, starts both sshd and waits until each accepts
    /// TCP connections. Panics if sshd is not installed (`.ci/run` installs
    /// it), or, with its stderr, if an sshd exits instead of listening.
    pub fn start() -> SshLab {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: these tests need the OpenSSH server \
             (.ci/run installs openssh-server and openssh-client; by hand: \
             apt-get install openssh-server openssh-client)"
        );
        // sshd refuses to start without its privilege separation folder,
        // which the Debian package only creates when its service starts.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (sshd's privsep folder)");

        let dir = tempfile::tempdir().expect("create the ssh lab's temporary folder");
        let lab_id = dir.path().display().to_string();
        // Built before anything is started, so that a panic half-way stops
        // what was already started (in Drop).
        let mut lab = SshLab {
            dir,
            hosts: Vec::new(),
            lab_id,
        };

        // The client's key, authorized on both hosts, and one they do not
        // know.
        let user_key = lab.keygen("user_key");
        let stranger_key = lab.keygen("stranger_key");
        let authorized = lab.dir().join("authorized_keys");
        std::fs::write(&authorized, read(&user_key.with_extension("pub")))
            .expect("write authorized_keys");

        let mut known_hosts = String::new();
        for (name, ip) in HOSTS {
            // A host key per host, as two machines would have.
            let host_key = lab.keygen(&format!("host_key_{name}"));
            lab.start_sshd(name, ip, &host_key, &authorized);
            let addr = lab.addr(name);
            known_hosts.push_str(&format!(
                "[{}]:{} {}",
                addr.ip(),
                addr.port(),
                read(&host_key.with_extension("pub"))
            ));
        }
        let known_hosts_path = lab.dir().join("known_hosts");
        std::fs::write(&known_hosts_path, known_hosts).expect("write known_hosts");

        let mut config = String::new();
        let clients = [
            ("alpha", lab.addr("alpha"), &user_key),
            ("beta", lab.addr("beta"), &user_key),
            ("stranger", lab.addr("alpha"), &stranger_key),
        ];
        for (alias, addr, key) in clients {
            config.push_str(&format!(
                "Host {alias}\n  HostName {}\n  Port {}\n  IdentityFile {}\n",
                addr.ip(),
                addr.port(),
                config_word(key)
            ));
        }
        // Common to all; ssh takes the first value it reads for an option,
        // so these come after the per-host ones. Nothing of this machine's
        // ssh setup is used: with -F, ssh reads no other configuration file,
        // IdentitiesOnly keeps an ssh-agent's keys out, and the global
        // known_hosts file (/etc/ssh/ssh_known_hosts) is replaced too.
        config.push_str(&format!(
            "Host *\n  User root\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  \
             UpdateHostKeys no\n  BatchMode yes\n  LogLevel ERROR\n",
            config_word(&known_hosts_path)
        ));
        std::fs::write(lab.config_path(), config).expect("write ssh_config");
        lab
    }

    /// The ssh command that reaches the lab's hosts, e.g. `ssh -F
    /// /tmp/.tmpXXXX/ssh_config` (what a test passes to the supervisor's
    /// `--ssh`); append the host name and the remote command.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", shell_word(&self.config_path()))
    }

    /// The ssh client configuration file: hosts `alpha`, `beta` and
    /// `stranger` (alpha, with a key it does not accept).
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// The lab's temporary folder (keys, configurations; free for the
    /// test's own files, e.g. a ControlPath), removed when the lab is
    /// dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port `host`'s sshd listens on.
    pub fn port(&self, host: &str) -> u16 {
        self.addr(host).port()
    }

    /// The address (loopback IP and port) `host`'s sshd listens on.
    pub fn addr(&self, host: &str) -> SocketAddr {
        self.host(host).addr
    }

    /// What `host`'s sshd has logged so far (LogLevel ERROR, or VERBOSE
    /// when `CALLPOOL_SSHD_DEBUG` is set).
    pub fn sshd_log(&self, host: &str) -> String {
        lock(&self.host(host).log).clone()
    }

    /// How many TCP connections `host`'s sshd holds open now (established,
    /// from /proc/net/tcp): one per ssh client, however many sessions a
    /// client multiplexes over its connection.
    pub fn connections(&self, host: &str) -> usize {
        let addr = self.addr(host);
        let IpAddr::V4(ip) = addr.ip() else {
            unreachable!("the lab's hosts are IPv4")
        };
        // /proc/net/tcp shows the address as the native-endian number of its
        // network-order bytes, and the port as a number; state 01 is
        // ESTABLISHED.
        let local = format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(ip.octets()),
            addr.port()
        );
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"01")
            })
            .count()
    }

    /// Pid and command line of every live process on this machine started
    /// through `host`'s sshd: those whose environment holds
    /// `CALLPOOL_TEST_HOST=<host>` and this lab's id, wherever they are now
    /// in the process tree. Zombies are left out; sshd's own processes never
    /// carry the marker (sshd sets it only in the environment of the
    /// commands it runs).
    pub fn remote_processes(&self, host: &str) -> Vec<(i32, String)> {
        let _ = self.index(host); // an unknown name is a mistake in the test
        snapshot()
            .into_iter()
            .filter(|p| !p.zombie && self.is_marked(p.pid, host))
            .map(|p| (p.pid, cmdline(p.pid)))
            .collect()
    }

    /// Simulates `host` dying: SIGKILLs its sshd listener, every process
    /// below it (one sshd per connection and the sessions' commands), and
    /// every process started through it that has left that tree; then waits
    /// until the port refuses connections. Clients connected to it see their
    /// connection drop; new connections are refused. Stopping a stopped host
    /// does nothing.
    pub fn stop_host(&mut self, host: &str) {
        let i = self.index(host);
        if let Err(why) = self.stop(i) {
            panic!("{why}");
        }
    }

    fn stop(&mut self, i: usize) -> Result<(), String> {
        let name = self.hosts[i].name;
        let addr = self.hosts[i].addr;
        let listener = match &self.hosts[i].child {
            Some(child) => child.id() as i32,
            None => return Ok(()),
        };
        let start = Instant::now();

        // First freeze the whole tree with SIGSTOP, round after round until
        // a round finds no new process: a stopped process cannot fork, so
        // the tree stops changing, and nothing gets reparented away from it
        // before it is complete (a parent killed first would hand its
        // children to init, out of reach of the ppid walk).
        let mut doomed: HashSet<i32> = HashSet::new();
        loop {
            let procs = snapshot();
            let mut found = descendants(&procs, listener);
            found.extend(
                procs
                    .iter()
                    .filter(|p| !p.zombie && self.is_marked(p.pid, name))
                    .map(|p| p.pid),
            );
            let new: Vec<i32> = found.difference(&doomed).copied().collect();
            if new.is_empty() {
                break;
            }
            for &pid in &new {
                // A process gone in the meantime is fine.
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            }
            doomed.extend(new);
            if start.elapsed() > CEILING {
                return Err(format!("{name}: its processes kept multiplying"));
            }
        }
        for &pid in &doomed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Reap the listener: it is our child.
        if let Some(mut child) = self.hosts[i].child.take() {
            let _ = child.wait();
        }

        // A process forked but not yet executed at the first scan carried
        // sshd's environment, not the marker: kill whatever shows up marked
        // until nothing does.
        loop {
            let left: Vec<i32> = snapshot()
                .iter()
                .filter(|p| !p.zombie && (doomed.contains(&p.pid) || self.is_marked(p.pid, name)))
                .map(|p| p.pid)
                .collect();
            if left.is_empty() {
                break;
            }
            if start.elapsed() > CEILING {
                return Err(format!("{name}: processes {left:?} outlived SIGKILL"));
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(Duration::from_millis(20));
        }

        // The listening socket closes with the listener (the per-connection
        // processes closed their copy before re-executing).
        while !refused(addr) {
            if start.elapsed() > CEILING {
                return Err(format!("{name}: {addr} still accepts connections"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn host(&self, name: &str) -> &Host {
        &self.hosts[self.index(name)]
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("the ssh lab has no host {name:?} (it has alpha and beta)"))
    }

    /// Whether `pid`'s environment marks it as started through `host` of
    /// this lab. A process that vanished (or that we may not read) is not.
    fn is_marked(&self, pid: i32, host: &str) -> bool {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        let host_var = format!("CALLPOOL_TEST_HOST={host}");
        let lab_var = format!("CALLPOOL_TEST_LAB={}", self.lab_id);
        let (mut has_host, mut has_lab) = (false, false);
        for var in environ.split(|&b| b == 0) {
            has_host |= var == host_var.as_bytes();
            has_lab |= var == lab_var.as_bytes();
        }
        has_host && has_lab
    }

    /// `ssh-keygen` a passwordless ed25519 key pair in the lab's folder;
    /// returns the private key's path (the public key is `NAME.pub`).
    fn keygen(&self, name: &str) -> PathBuf {
        let path = self.dir().join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("callpool-test-{name}"))
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen (package openssh-client; .ci/run installs it)");
        assert!(
            out.status.success(),
            "ssh-keygen {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Starts `name`'s sshd on a free port of `ip`, adds it to the lab (so
    /// that it is stopped on drop, also if this panics) and waits until it
    /// accepts connections.
    fn start_sshd(&mut self, name: &'static str, ip: Ipv4Addr, host_key: &Path, authorized: &Path) {
        let debug = std::env::var_os(DEBUG_VAR).is_some();
        let worker_dir = Path::new(HTTP_WORKER)
            .parent()
            .expect("the http-worker binary's folder");
        // Between finding a free port and sshd binding it, another process
        // may take it: then sshd exits at once, and we try another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = free_port(ip);
            let config_path = self.dir().join(format!("sshd_config_{name}"));
            let config = format!(
                "ListenAddress {addr}\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 # The lab's files are in a temporary folder, not owned as sshd wants.\n\
                 StrictModes no\n\
                 PidFile none\n\
                 # Tests may open many sessions and connections at once.\n\
                 MaxSessions 200\n\
                 MaxStartups 200\n\
                 # Nothing from root's ~/.ssh/rc.\n\
                 PermitUserRC no\n\
                 LogLevel {level}\n\
                 # PATH: the http-worker built by cargo is found by name.\n\
                 # CALLPOOL_TEST_HOST, CALLPOOL_TEST_LAB: mark every process started\n\
                 # through this sshd, to find it later (SshLab::remote_processes).\n\
                 # SHLVL=1: the login shell (root's bash) then skips ~/.bashrc,\n\
                 # which Debian's bash reads for commands run by sshd, and which\n\
                 # would put this machine's own folders before ours on the PATH.\n\
                 SetEnv {path} {host_var} {lab_var} SHLVL=1\n",
                host_key = config_word(host_key),
                authorized = config_word(authorized),
                level = if debug { "VERBOSE" } else { "ERROR" },
                path = config_word(format!(
                    "PATH={}:/usr/local/bin:/usr/bin:/bin",
                    worker_dir.display()
                )),
                host_var = config_word(format!("CALLPOOL_TEST_HOST={name}")),
                lab_var = config_word(format!("CALLPOOL_TEST_LAB={}", self.lab_id)),
            );
            std::fs::write(&config_path, config).expect("write an sshd_config");

            let mut child = Command::new(SSHD)
                // -D: stay in the foreground, as our child; -e: log to stderr.
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_path)
                // The test's own environment must not mark sshd itself.
                .env_remove("CALLPOOL_TEST_HOST")
                .env_remove("CALLPOOL_TEST_LAB")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sshd");
            let log = Arc::new(Mutex::new(String::new()));
            let pipe = child.stderr.take().expect("sshd's stderr pipe");
            let sink = log.clone();
            // Not joined while sshd runs: the per-connection processes hold
            // the pipe too, so it ends when the last of them does.
            let reader = thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if debug {
                        eprintln!("[sshd {name}] {line}");
                    }
                    let mut log = lock(&sink);
                    log.push_str(&line);
                    log.push('\n');
                }
            });
            self.hosts.push(Host {
                name,
                addr,
                child: Some(child),
                log: log.clone(),
            });

            let mut exited = None;
            wait_until(
                CEILING,
                &format!("sshd {name} to accept connections on {addr}"),
                || {
                    let child = self.hosts.last_mut().and_then(|h| h.child.as_mut());
                    match child.map(|c| c.try_wait()) {
                        Some(Ok(Some(status))) => {
                            exited = Some(status);
                            true
                        }
                        _ => TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
                    }
                },
            );
            let Some(status) = exited else {
                return;
            };
            // It exited (and was reaped) before it had any child: its
            // stderr is complete.
            self.hosts.pop();
            let _ = reader.join();
            let log = lock(&log).clone();
            if log.contains("Address already in use") && attempt < 5 {
                continue;
            }
            panic!(
                "sshd {name} exited ({status}) instead of listening on {addr}; its stderr:\n{log}"
            );
        }
    }
}

impl Drop for SshLab {
    /// Stops both hosts and everything started through them. Never panics
    /// (a panic while a failed test unwinds would abort the test binary):
    /// what it cannot stop is reported on stderr.
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            if let Err(why) = self.stop(i) {
                eprintln!("ssh lab: could not stop {}: {why}", self.hosts[i].name);
            }
        }
    }
}

/// One process, as /proc showed it.
struct Proc {
    pid: i32,
    ppid: i32,
    zombie: bool,
}

/// Every process on the machine; those that vanish while being read are
/// left out.
fn snapshot() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and
            // parentheses, so parse from the last ')'.
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                zombie: state == "Z" || state == "X",
            })
        })
        .collect()
}

/// `root` and every process below it, following ppid links.
fn descendants(procs: &[Proc], root: i32) -> HashSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found = HashSet::from([root]);
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                todo.push(child);
            }
        }
    }
    found
}

/// A process's command line, its arguments joined by spaces (empty if it
/// vanished).
fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port that was free on `ip` a moment ago.
fn free_port(ip: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
    let port = listener
        .local_addr()
        .expect("the probe listener's address")
        .port();
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Whether a TCP connection to `addr` is refused (nothing listens there).
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A reader thread that panicked leaves the text it had: still useful.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A word for an sshd or ssh configuration file, in double quotes (which
/// both accept) so that a path with spaces stays one word.
fn config_word(word: impl AsRef<std::ffi::OsStr>) -> String {
    let word = word
        .as_ref()
        .to_str()
        .expect("a UTF-8 path for an ssh configuration");
    assert!(
        !word.contains(['"', '\\', '\n']),
        "cannot quote {word:?} in an ssh configuration"
    );
    format!("\"{word}\"")
}

/// A word for a POSIX shell command line: as is when it is plain, else in
/// single quotes.
fn shell_word(path: &Path) -> String {
    let word = path.to_str().expect("a UTF-8 path");
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
